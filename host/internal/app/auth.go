package app

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"

	"github.com/llm-proxy/llm-proxy/host/internal/egress"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/host/internal/providers"
	"github.com/llm-proxy/llm-proxy/host/internal/router"
	"github.com/llm-proxy/llm-proxy/host/internal/tracing"
)

// authDoer sends a provider's requests with the authentication that the
// manifest of the plugin serving it declares, looked up per request: the
// plugin may be replaced by a version that authenticates differently.
//
// A provider with several keys sends its requests to them in turn, each
// key as many times in a cycle as its weight (api_key_weights). A key
// the upstream answers 429 rests for the answer's Retry-After (or
// keyRest), one it refuses (401, 403) for keyRefusedRest, and the request
// goes at once to the next key that is not resting: the plugin sees the
// answer of the last key tried.
type authDoer struct {
	plugin string
	reg    *plugin.Registry
	images bool // allow_image_fetch
	opts   egress.Options
	keys   []*upstreamKey  // empty: no credentials
	next   atomic.Uint64   // position in the cycle of turns
	tracer *tracing.Tracer // nil: upstream requests are not traced
	now    func() time.Time

	mu      sync.Mutex
	clients map[clientKey]*egress.Client
}

// upstreamKey is one of a provider's keys and its state.
type upstreamKey struct {
	secret    string
	weight    uint64       // turns per cycle, at least 1
	restUntil atomic.Int64 // Unix ms
	requests  atomic.Int64
	refused   atomic.Int64 // 429, 401 and 403 answers
}

type clientKey struct {
	auth egress.Auth
	key  int // index in keys; -1 for none
}

// How long a key rests after the upstream refused it.
const (
	keyRest        = 5 * time.Second // a 429 without Retry-After
	keyRefusedRest = time.Minute     // 401 or 403: probably revoked
	maxKeyRest     = time.Hour
)

// newAuthDoer serves a provider whose keys are joined in secret; weights,
// when there is one per key, give each its share (otherwise they take
// equal turns).
func newAuthDoer(pluginName string, reg *plugin.Registry, images bool, opts egress.Options, secret string, weights []int) *authDoer {
	d := &authDoer{plugin: pluginName, reg: reg, images: images, opts: opts, now: time.Now,
		clients: map[clientKey]*egress.Client{}}
	d.opts.Secret = ""
	if secret != "" {
		parts := strings.Split(secret, providers.SecretSep)
		for i, s := range parts {
			k := &upstreamKey{secret: s, weight: 1}
			if len(weights) == len(parts) && weights[i] > 1 {
				k.weight = uint64(weights[i])
			}
			d.keys = append(d.keys, k)
		}
	}
	return d
}

func (d *authDoer) Do(req *http.Request) (*http.Response, error) {
	if d.tracer == nil {
		return d.do(req)
	}
	// One client span per upstream request, its key retries included,
	// ended when the answer's head arrives.
	sp := d.tracer.StartUpstream(req.Context(), req.Method, req.URL.Host, req.URL.Path, propagation.HeaderCarrier(req.Header))
	resp, err := d.do(req)
	switch {
	case err != nil:
		sp.End("transport")
	default:
		sp.Set(semconv.HTTPResponseStatusCode(resp.StatusCode))
		errType := ""
		if resp.StatusCode >= 400 {
			errType = strconv.Itoa(resp.StatusCode)
		}
		sp.End(errType)
	}
	return resp, err
}

func (d *authDoer) do(req *http.Request) (*http.Response, error) {
	auth := egress.Auth{Type: "none"}
	if v, err := d.reg.Lookup(d.plugin); err == nil {
		a := v.Manifest.Auth
		auth = egress.Auth{Type: a.Type, Name: a.Name, Format: a.Format}
	}
	if len(d.keys) == 0 {
		c, err := d.client(auth, -1)
		if err != nil {
			return nil, err
		}
		return c.Do(req)
	}
	if len(d.keys) == 1 {
		c, err := d.client(auth, 0)
		if err != nil {
			return nil, err
		}
		d.keys[0].requests.Add(1)
		return c.Do(req)
	}
	tried := make([]bool, len(d.keys))
	for {
		i := d.pick(tried)
		tried[i] = true
		c, err := d.client(auth, i)
		if err != nil {
			return nil, err
		}
		k := d.keys[i]
		k.requests.Add(1)
		resp, err := c.Do(req)
		if err != nil || !d.refusedBy(k, resp) {
			return resp, err
		}
		// The key was refused: another one may serve, if one is left
		// that is not resting and the body can be sent again.
		if !d.anyFree(tried) || req.GetBody == nil {
			return resp, nil
		}
		body, gerr := req.GetBody()
		if gerr != nil {
			return resp, nil
		}
		resp.Body.Close()
		req = req.Clone(req.Context())
		req.Body = body
	}
}

// pick chooses the next key in turn among those neither resting nor
// tried, so that they share the traffic by their weights; when every
// untried key rests, the one whose rest ends first.
func (d *authDoer) pick(tried []bool) int {
	now := d.now().UnixMilli()
	var freeBuf [8]int
	free := freeBuf[:0]
	best := -1
	for i, k := range d.keys {
		if tried[i] {
			continue
		}
		if k.restUntil.Load() <= now {
			free = append(free, i)
		} else if best < 0 || k.restUntil.Load() < d.keys[best].restUntil.Load() {
			best = i
		}
	}
	if len(free) == 0 {
		return best
	}
	var total uint64
	for _, i := range free {
		total += d.keys[i].weight
	}
	n := d.next.Add(1) % total
	for _, i := range free {
		if w := d.keys[i].weight; n >= w {
			n -= w
		} else {
			return i
		}
	}
	return free[len(free)-1] // not reached: n < total
}

// anyFree reports whether an untried key is not resting.
func (d *authDoer) anyFree(tried []bool) bool {
	now := d.now().UnixMilli()
	for i, k := range d.keys {
		if !tried[i] && k.restUntil.Load() <= now {
			return true
		}
	}
	return false
}

// refusedBy rests k if resp refuses it, and reports whether it did.
func (d *authDoer) refusedBy(k *upstreamKey, resp *http.Response) bool {
	var rest time.Duration
	switch resp.StatusCode {
	case http.StatusTooManyRequests:
		rest = keyRest
		if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s > 0 {
			rest = min(time.Duration(s)*time.Second, maxKeyRest)
		} else if t, err := http.ParseTime(resp.Header.Get("Retry-After")); err == nil && t.After(d.now()) {
			rest = min(t.Sub(d.now()), maxKeyRest)
		}
	case http.StatusUnauthorized, http.StatusForbidden:
		rest = keyRefusedRest
	default:
		return false
	}
	k.refused.Add(1)
	k.restUntil.Store(d.now().Add(rest).UnixMilli())
	return true
}

// KeyStates describes the provider's keys, in order.
func (d *authDoer) KeyStates() []router.KeyState {
	now := d.now().UnixMilli()
	out := make([]router.KeyState, len(d.keys))
	for i, k := range d.keys {
		out[i] = router.KeyState{Weight: int(k.weight), Requests: k.requests.Load(), Refused: k.refused.Load()}
		if u := k.restUntil.Load(); u > now {
			t := time.UnixMilli(u).UTC()
			out[i].RestingUntil = &t
		}
	}
	return out
}

// ImageFetchAllowed reports whether the operator lets this provider's
// plugin fetch images (allow_image_fetch).
func (d *authDoer) ImageFetchAllowed() bool { return d.images }

// FetchImage downloads an image a client linked to, for the plugin's
// fetch_image. It carries no credentials, so a client without any serves.
func (d *authDoer) FetchImage(ctx context.Context, rawURL string, maxBytes int64) (string, []byte, error) {
	c, err := d.client(egress.Auth{Type: "none"}, -1)
	if err != nil {
		return "", nil, err
	}
	return c.FetchImage(ctx, rawURL, maxBytes)
}

// client returns the provider's egress client for an authentication and
// key, built on first use.
func (d *authDoer) client(auth egress.Auth, key int) (*egress.Client, error) {
	ck := clientKey{auth: auth, key: key}
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.clients[ck]
	if c == nil {
		o := d.opts
		o.Auth = auth
		if key >= 0 {
			o.Secret = d.keys[key].secret
		}
		var err error
		if c, err = egress.New(o); err != nil {
			return nil, err
		}
		d.clients[ck] = c
	}
	return c, nil
}
