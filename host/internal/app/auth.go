package app

import (
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
	d.mu.Lock()
	c := d.clients[auth]
	if c == nil {
		o := d.opts
		o.Auth = auth
		var err error
		if c, err = egress.New(o); err != nil {
			d.mu.Unlock()
			return nil, err
		}
		d.clients[auth] = c
	}
	d.mu.Unlock()
	return c.Do(req)
}
