package app

import (
	"context"
	"net/http"
	"sync"

	"github.com/llm-proxy/llm-proxy/host/internal/egress"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
)

// authDoer sends a provider's requests with the authentication that the
// manifest of the plugin serving it declares, looked up per request: the
// plugin may be replaced by a version that authenticates differently.
type authDoer struct {
	plugin  string
	reg     *plugin.Registry
	images  bool // allow_image_fetch
	opts    egress.Options
	mu      sync.Mutex
	clients map[egress.Auth]*egress.Client
}

func (d *authDoer) Do(req *http.Request) (*http.Response, error) {
	auth := egress.Auth{Type: "none"}
	if v, err := d.reg.Lookup(d.plugin); err == nil {
		a := v.Manifest.Auth
		auth = egress.Auth{Type: a.Type, Name: a.Name, Format: a.Format}
	}
	c, err := d.client(auth)
	if err != nil {
		return nil, err
	}
	return c.Do(req)
}

// ImageFetchAllowed reports whether the operator lets this provider's
// plugin fetch images (allow_image_fetch).
func (d *authDoer) ImageFetchAllowed() bool { return d.images }

// FetchImage downloads an image a client linked to, for the plugin's
// fetch_image. It carries no credentials, so a client without any serves.
func (d *authDoer) FetchImage(ctx context.Context, rawURL string, maxBytes int64) (string, []byte, error) {
	c, err := d.client(egress.Auth{Type: "none"})
	if err != nil {
		return "", nil, err
	}
	return c.FetchImage(ctx, rawURL, maxBytes)
}

// client returns the provider's egress client for an authentication,
// built on first use.
func (d *authDoer) client(auth egress.Auth) (*egress.Client, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.clients[auth]
	if c == nil {
		o := d.opts
		o.Auth = auth
		var err error
		if c, err = egress.New(o); err != nil {
			return nil, err
		}
		d.clients[auth] = c
	}
	return c, nil
}
