// Package router picks the provider that serves a requested model.
//
// A model is matched, in order: exactly against every provider's model list
// (the first provider listing it wins), then as "<provider>/<model>", which
// sends any model name to that provider. Nothing else matches: the server
// answers 404 model_not_found.
package router

import (
	"strings"
	"sync/atomic"

	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
)

// Provider is a configured provider as the request path needs it.
type Provider struct {
	Name   string
	Plugin string
	Models []string
	// Egress sends the provider's upstream requests with its credentials.
	Egress plugin.Doer
	// GuestConfig is the JSON the plugin reads with config_read:
	// {"provider":..., "base_url":..., "options":{...}}. No secret.
	GuestConfig []byte
}

// Router resolves models. It is immutable; build a new one to change it.
type Router struct {
	providers []*Provider
	byName    map[string]*Provider
	byModel   map[string]*Provider
}

// New builds a router over providers, in priority order.
func New(providers []*Provider) *Router {
	r := &Router{providers: providers, byName: map[string]*Provider{}, byModel: map[string]*Provider{}}
	for _, p := range providers {
		r.byName[p.Name] = p
		for _, m := range p.Models {
			if _, taken := r.byModel[m]; !taken {
				r.byModel[m] = p
			}
		}
	}
	return r
}

// Resolve returns the provider for model and the model name to send it.
func (r *Router) Resolve(model string) (*Provider, string, bool) {
	if p, ok := r.byModel[model]; ok {
		return p, model, true
	}
	if name, rest, ok := strings.Cut(model, "/"); ok && rest != "" {
		if p, ok := r.byName[name]; ok {
			return p, rest, true
		}
	}
	return nil, "", false
}

// Model is one entry of GET /v1/models.
type Model struct {
	ID       string `json:"id"`
	Object   string `json:"object"`
	Created  int64  `json:"created"`
	OwnedBy  string `json:"owned_by"`
	Provider string `json:"-"`
}

// Models lists every configured model: the plain name (when this provider
// is the one it routes to) and the provider-prefixed name.
func (r *Router) Models() []Model {
	var out []Model
	for _, p := range r.providers {
		for _, m := range p.Models {
			if r.byModel[m] == p {
				out = append(out, Model{ID: m, Object: "model", OwnedBy: p.Name, Provider: p.Name})
			}
		}
	}
	for _, p := range r.providers {
		for _, m := range p.Models {
			out = append(out, Model{ID: p.Name + "/" + m, Object: "model", OwnedBy: p.Name, Provider: p.Name})
		}
	}
	return out
}

// Providers returns the providers in priority order.
func (r *Router) Providers() []*Provider { return r.providers }

// Live holds the current Router and lets it be replaced while requests
// are being served: a request resolves against whichever Router was
// current when it asked, and a swap never blocks a request.
type Live struct{ cur atomic.Pointer[Router] }

// NewLive starts a Live holder with r.
func NewLive(r *Router) *Live {
	l := &Live{}
	l.cur.Store(r)
	return l
}

// Load returns the current Router.
func (l *Live) Load() *Router { return l.cur.Load() }

// Store makes r the current Router.
func (l *Live) Store(r *Router) { l.cur.Store(r) }
