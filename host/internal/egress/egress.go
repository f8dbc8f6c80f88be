// Package egress is the only way plugins reach the network. A Client is
// made per provider: it allows the hosts of the provider's base URL plus the
// operator's extra hosts, checks every address after DNS resolution (private,
// loopback and link-local ranges are refused unless the provider may reach
// private networks), re-checks each redirect, requires HTTPS unless private
// networks are allowed, and adds the provider's secret to requests bound for
// the base URL's host. The secret never leaves this package except on the
// wire to that host.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Errors a request can fail with before it is sent.
var (
	ErrHostNotAllowed = errors.New("egress: host not granted to this provider")
	ErrSchemeDenied   = errors.New("egress: only https is allowed for this provider")
	ErrPrivateAddress = errors.New("egress: private or loopback address refused")
	ErrPathNotAllowed = errors.New("egress: path outside the provider's base_url")
)

// Auth says how the secret is attached.
type Auth struct {
	Type   string // "header", "query" or "none"
	Name   string // header or query parameter name
	Format string // for headers, with "{key}" where the secret goes
}

// Options configure a Client.
type Options struct {
	BaseURL             string
	ExtraHosts          []string
	AllowPrivateNetwork bool
	Auth                Auth
	Secret              string
	// Transport overrides the shared transport (tests).
	Transport http.RoundTripper
}

// Client sends a provider's upstream requests.
type Client struct {
	http      *http.Client
	transport http.RoundTripper
	// imageTransport fetches images: the public-only transport whatever the
	// provider may reach (or Options.Transport, in tests).
	imageTransport http.RoundTripper
	authHost       string
	basePath       string              // the base URL's path, without a trailing slash
	allowed        map[string][]string // host -> the ports it may be reached on
	private        bool
	auth           Auth
	secret         string
}

// New builds a Client. The shared transport keeps connections alive across
// requests; its dialer refuses private addresses when opts say so.
func New(opts Options) (*Client, error) {
	base, err := url.Parse(opts.BaseURL)
	if err != nil || base.Host == "" {
		return nil, fmt.Errorf("egress: bad base_url %q", opts.BaseURL)
	}
	c := &Client{
		authHost: strings.ToLower(base.Hostname()),
		basePath: strings.TrimRight(base.Path, "/"),
		allowed:  map[string][]string{strings.ToLower(base.Hostname()): {portOf(base)}},
		private:  opts.AllowPrivateNetwork,
		auth:     opts.Auth,
		secret:   opts.Secret,
	}
	for _, h := range opts.ExtraHosts {
		// "host:port" grants that port; a bare host, the default ones.
		host, port, err := net.SplitHostPort(h)
		ports := []string{port}
		if err != nil {
			host, ports = strings.Trim(h, "[]"), []string{"443", "80"}
		}
		host = strings.ToLower(host)
		c.allowed[host] = append(c.allowed[host], ports...)
	}
	c.transport, c.imageTransport = opts.Transport, opts.Transport
	if opts.Transport == nil {
		c.transport, c.imageTransport = publicTransport, publicTransport
		if c.private {
			c.transport = privateTransport
		}
	}
	c.http = &http.Client{
		Transport: c.transport,
		// Go's client copies the first request's headers onto redirects
		// (dropping only Authorization, and only off the domain), so the
		// secret is removed and re-added per hop: it goes to the base URL's
		// host and nowhere else.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("egress: too many redirects")
			}
			if err := c.check(req.URL); err != nil {
				return err
			}
			c.authorize(req)
			return nil
		},
	}
	return c, nil
}

func (c *Client) check(u *url.URL) error {
	switch u.Scheme {
	case "https":
	case "http":
		if !c.private {
			return ErrSchemeDenied
		}
	default:
		return ErrSchemeDenied
	}
	host := strings.ToLower(u.Hostname())
	ports, ok := c.allowed[host]
	if !ok {
		return fmt.Errorf("%w: %s", ErrHostNotAllowed, u.Hostname())
	}
	if port := portOf(u); !slices.Contains(ports, port) {
		return fmt.Errorf("%w: %s on port %s", ErrHostNotAllowed, u.Hostname(), port)
	}
	if !c.pathAllowed(host, u.Path) {
		return fmt.Errorf("%w: %s", ErrPathNotAllowed, u.EscapedPath())
	}
	return nil
}

// portOf is the port u names, or its scheme's default.
func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "http" {
		return "80"
	}
	return "443"
}

// pathAllowed reports whether a request may go to path (decoded) on host:
// no "." or ".." segment anywhere (a server would resolve it, so what the
// path seems to name is not what it reaches), and on the base URL's host,
// which gets the secret, only the base URL's path and below it.
func (c *Client) pathAllowed(host, path string) bool {
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	if host != c.authHost || c.basePath == "" {
		return true
	}
	return path == c.basePath || strings.HasPrefix(path, c.basePath+"/")
}

// Do checks the destination, attaches credentials and sends req.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	if err := c.check(req.URL); err != nil {
		return nil, err
	}
	c.authorize(req)
	return c.http.Do(req)
}

// authorize sets the credential on a request bound for the base URL's host
// and removes it (whatever the plugin or a redirect put there) otherwise.
func (c *Client) authorize(req *http.Request) {
	if c.auth.Type != "header" && c.auth.Type != "query" {
		return
	}
	own := c.secret != "" && strings.EqualFold(req.URL.Hostname(), c.authHost)
	switch c.auth.Type {
	case "header":
		if own {
			req.Header.Set(c.auth.Name, strings.ReplaceAll(c.auth.Format, "{key}", c.secret))
		} else {
			req.Header.Del(c.auth.Name)
		}
	case "query":
		q := req.URL.Query()
		if own {
			q.Set(c.auth.Name, c.secret)
		} else {
			q.Del(c.auth.Name)
		}
		req.URL.RawQuery = q.Encode()
	}
}

// IsPrivate reports whether an address must not be reached by providers
// that may not use private networks.
func IsPrivate(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast() {
		return true
	}
	if a.Is4() {
		return cgnat.Contains(a) || benchmarking.Contains(a) || reserved4.Contains(a) || a.As4()[0] == 0
	}
	// IPv6 addresses that carry an IPv4 address, which a translator or
	// relay on the way may deliver to: the IPv4 address decides.
	b := a.As16()
	switch {
	case nat64.Contains(a), ipv4Compatible.Contains(a):
		return IsPrivate(netip.AddrFrom4([4]byte(b[12:16])))
	case sixToFour.Contains(a):
		return IsPrivate(netip.AddrFrom4([4]byte(b[2:6])))
	case nat64Local.Contains(a), teredo.Contains(a):
		// Where the IPv4 address sits depends on the network (local-use
		// NAT64), or it is obfuscated (Teredo): refused.
		return true
	}
	return false
}

var (
	cgnat          = netip.MustParsePrefix("100.64.0.0/10")
	benchmarking   = netip.MustParsePrefix("198.18.0.0/15")
	reserved4      = netip.MustParsePrefix("240.0.0.0/4") // and the broadcast address
	nat64          = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48")
	ipv4Compatible = netip.MustParsePrefix("::/96")
	sixToFour      = netip.MustParsePrefix("2002::/16")
	teredo         = netip.MustParsePrefix("2001::/32")
)

// publicControl runs after DNS resolution, on the address actually dialled.
func publicControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrPrivateAddress, address)
	}
	if IsPrivate(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrPrivateAddress, ap.Addr())
	}
	return nil
}

func newTransport(private bool) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !private {
		d.Control = publicControl
	}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer(d.DialContext),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

var (
	publicTransport  = newTransport(false)
	privateTransport = newTransport(true)
)

// dialer wraps dial for the shared transports. When the process has no
// file descriptor left (a burst of thousands of streams, each holding a
// client and an upstream connection), the connections idling in the pools
// are given up and the dial is tried once more: a new request is worth
// more than a connection kept for one that may come.
func dialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil && outOfFiles(err) {
			closeIdle()
			c, err = dial(ctx, network, addr)
		}
		return c, err
	}
}

// outOfFiles reports whether a dial failed for want of a file descriptor:
// for the connection's socket, or for the DNS lookup before it. Go's own
// resolver keeps only the text of that error; the system's (getaddrinfo,
// which Go uses when nsswitch.conf asks for more than files and DNS) says
// the name was not found, so then the kernel is asked whether a socket can
// still be opened.
func outOfFiles(err error) bool {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return true
	}
	var dns *net.DNSError
	if !errors.As(err, &dns) {
		return false
	}
	return strings.Contains(dns.Err, syscall.EMFILE.Error()) || // ENFILE's text begins with it
		noSocketLeft()
}

// closeIdle closes the idle connections of both shared transports, at most
// once per closeIdleEvery: during a burst, every failing dial would
// otherwise empty the pools again, for every provider. It is set in init:
// the transports' dialers refer to it, so naming the transports in its
// declaration would be an initialisation cycle.
var closeIdle func()

const closeIdleEvery = 100 * time.Millisecond

var lastCloseIdle atomic.Int64 // unix nanoseconds

func init() {
	closeIdle = func() {
		now := time.Now().UnixNano()
		last := lastCloseIdle.Load()
		if now-last < int64(closeIdleEvery) || !lastCloseIdle.CompareAndSwap(last, now) {
			return
		}
		publicTransport.CloseIdleConnections()
		privateTransport.CloseIdleConnections()
	}
}

// IsDenied reports whether err came from a refused destination.
func IsDenied(err error) bool {
	return errors.Is(err, ErrHostNotAllowed) || errors.Is(err, ErrSchemeDenied) || errors.Is(err, ErrPrivateAddress) ||
		errors.Is(err, ErrPathNotAllowed)
}

// IsTimeout reports whether err is a timeout.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
