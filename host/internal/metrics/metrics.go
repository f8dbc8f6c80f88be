// Package metrics exports LLM Proxy's counters in the Prometheus text
// format, for GET /metrics.
//
// What happens on the request path (requests, tokens, cost, attempts,
// limit refusals, streams) is counted as it happens, with
// prometheus/client_golang's vectors: a few label lookups and atomic adds
// per request. What other parts already count (the plugin runtime, the
// request log's writer, the WebSocket hub, the circuit breakers) is read
// when Prometheus scrapes, so it costs the request path nothing.
//
// Every label takes a bounded set of values: providers, the model names of
// routes and provider model lists (a name asked for as "provider/<any
// model>" is counted as OtherModel), operations, status classes. Series
// per client key exist only with Options.PerKey: a deployment may have
// thousands of keys, each a series per family.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/llm-proxy/llm-proxy/host/internal/hub"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/host/internal/requestlog"
	"github.com/llm-proxy/llm-proxy/host/internal/router"
)

// OtherModel stands for the model names that are not configured: those
// asked for as "provider/<any model>", which clients choose freely.
const OtherModel = "other"

// NoProvider stands for the provider of a request that reached none (an
// unknown model, a key over its limit).
const NoProvider = "none"

// LatencyBuckets are the upper bounds, in seconds, of the request duration
// and time-to-first-byte histograms: from a cached answer in a few
// milliseconds to a long generation of several minutes.
var LatencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600}

// Sources are the parts whose own counts are read at each scrape; any may
// be nil.
type Sources struct {
	InFlight   func() int64 // /v1 requests being served
	Plugins    func() []plugin.Info
	RequestLog func() requestlog.Stats
	Hub        func() hub.Stats
	Breakers   func() []router.TargetHealth
}

// Options configure the metrics.
type Options struct {
	// PerKey adds series per client key id (requests, tokens, cost).
	PerKey  bool
	Sources Sources
}

// Metrics holds the instruments and their registry. A nil *Metrics counts
// nothing, so callers need no checks.
type Metrics struct {
	reg    *prometheus.Registry
	perKey bool
	cache  sync.Map // seriesKey -> *series
	// attemptCache holds each target's attempt counters (error, ok),
	// keyed by provider and upstream model.
	attemptCache sync.Map // seriesKey -> *[2]prometheus.Counter

	requests  *prometheus.CounterVec   // provider, model, operation, status_class
	duration  *prometheus.HistogramVec // provider, model, operation
	ttfb      *prometheus.HistogramVec // provider, model, operation
	tokens    *prometheus.CounterVec   // provider, model, type
	cost      *prometheus.CounterVec   // provider, model
	streams   prometheus.Gauge
	attempts  *prometheus.CounterVec // provider, model, result
	retries   *prometheus.CounterVec // model
	fallbacks *prometheus.CounterVec // model
	refusals  *prometheus.CounterVec // reason

	keyRequests *prometheus.CounterVec // key_id, status_class
	keyTokens   *prometheus.CounterVec // key_id, type
	keyCost     *prometheus.CounterVec // key_id
}

// seriesKey names the series of one provider, model and operation.
type seriesKey struct{ provider, model, operation string }

// series are the children of the vectors for one seriesKey, looked up
// once: a request then costs one map read instead of one per family.
type series struct {
	requests  [len(classes)]atomic.Value // a prometheus.Counter by status class, made on first use
	duration  prometheus.Observer
	ttfb      prometheus.Observer
	prompt    prometheus.Counter
	output    prometheus.Counter
	cached    prometheus.Counter
	cost      prometheus.Counter
	retries   prometheus.Counter
	fallbacks prometheus.Counter
}

// New makes the metrics and registers them, with the Go runtime's and the
// process's own.
func New(o Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), perKey: o.PerKey}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(v)
		return v
	}
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: LatencyBuckets}, labels)
		m.reg.MustRegister(v)
		return v
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		m.reg.MustRegister(g)
		return g
	}
	m.requests = counter("llmproxy_requests_total", "Requests to /v1 that passed authentication, by the provider that answered (none if no provider did), model, operation and status class.",
		"provider", "model", "operation", "status_class")
	m.duration = histogram("llmproxy_request_duration_seconds", "Time from a request's arrival to its last byte.", "provider", "model", "operation")
	m.ttfb = histogram("llmproxy_time_to_first_byte_seconds", "Time from a request's arrival to the first byte of its answer, for answered requests.", "provider", "model", "operation")
	m.tokens = counter("llmproxy_tokens_total", "Tokens the upstreams reported, by type: prompt, completion, and cached (a part of prompt).", "provider", "model", "type")
	m.cost = counter("llmproxy_cost_usd_total", "Cost of the requests in US dollars, from the price table.", "provider", "model")
	m.streams = gauge("llmproxy_streams_open", "Streamed answers being sent.")
	m.attempts = counter("llmproxy_route_attempts_total", "Attempts at a target, by provider, upstream model and result (ok or error).", "provider", "model", "result")
	m.retries = counter("llmproxy_route_retries_total", "Attempts after a request's first, by the model asked for.", "model")
	m.fallbacks = counter("llmproxy_route_fallbacks_total", "Requests answered by another target than the first one tried.", "model")
	m.refusals = counter("llmproxy_limit_rejections_total", "Requests refused by a limit: the key's rpm, tpm, max_parallel or budget, or the providers' quotas (provider_quota).", "reason")
	if o.PerKey {
		m.keyRequests = counter("llmproxy_key_requests_total", "Requests by client key id and status class.", "key_id", "status_class")
		m.keyTokens = counter("llmproxy_key_tokens_total", "Tokens by client key id and type.", "key_id", "type")
		m.keyCost = counter("llmproxy_key_cost_usd_total", "Cost by client key id, in US dollars.", "key_id")
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), &scraped{o.Sources})
	return m
}

// Handler serves the metrics in the Prometheus text format (or another
// format the scraper asks for).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Request is one finished /v1 request.
type Request struct {
	KeyID     string // "" for the admin key
	Provider  string // NoProvider when none answered
	Model     string // bounded: a configured name or OtherModel
	Operation string
	Status    int
	Duration  time.Duration
	TTFB      time.Duration // 0: no answer began
	Prompt    int64
	Output    int64
	Cached    int64
	CostUSD   float64
	// Retries and Fallback describe its routing: attempts after the
	// first, and whether another target than the first answered.
	Retries  int
	Fallback bool
}

// Observe counts a finished request.
func (m *Metrics) Observe(r Request) {
	if m == nil {
		return
	}
	se := m.series(seriesKey{r.Provider, r.Model, r.Operation})
	class := StatusClass(r.Status)
	if i := classIndex(r.Status); i >= 0 {
		c, _ := se.requests[i].Load().(prometheus.Counter)
		if c == nil {
			c = m.requests.WithLabelValues(r.Provider, r.Model, r.Operation, class)
			se.requests[i].Store(c) // whoever stores first, it is the same child
		}
		c.Inc()
	} else {
		m.requests.WithLabelValues(r.Provider, r.Model, r.Operation, class).Inc()
	}
	se.duration.Observe(r.Duration.Seconds())
	if r.TTFB > 0 {
		se.ttfb.Observe(r.TTFB.Seconds())
	}
	if r.Prompt > 0 || r.Output > 0 {
		se.prompt.Add(float64(r.Prompt))
		se.output.Add(float64(r.Output))
		se.cached.Add(float64(r.Cached))
	}
	if r.CostUSD > 0 {
		se.cost.Add(r.CostUSD)
	}
	if r.Retries > 0 {
		se.retries.Add(float64(r.Retries))
	}
	if r.Fallback {
		se.fallbacks.Inc()
	}
	if m.perKey && r.KeyID != "" {
		m.keyRequests.WithLabelValues(r.KeyID, class).Inc()
		if r.Prompt > 0 || r.Output > 0 {
			m.keyTokens.WithLabelValues(r.KeyID, "prompt").Add(float64(r.Prompt))
			m.keyTokens.WithLabelValues(r.KeyID, "completion").Add(float64(r.Output))
			m.keyTokens.WithLabelValues(r.KeyID, "cached").Add(float64(r.Cached))
		}
		if r.CostUSD > 0 {
			m.keyCost.WithLabelValues(r.KeyID).Add(r.CostUSD)
		}
	}
}

// series returns k's children, making them on first use. The label sets
// are bounded (see the package comment), and so is the cache.
func (m *Metrics) series(k seriesKey) *series {
	if v, ok := m.cache.Load(k); ok {
		return v.(*series)
	}
	se := &series{
		duration:  m.duration.WithLabelValues(k.provider, k.model, k.operation),
		ttfb:      m.ttfb.WithLabelValues(k.provider, k.model, k.operation),
		prompt:    m.tokens.WithLabelValues(k.provider, k.model, "prompt"),
		output:    m.tokens.WithLabelValues(k.provider, k.model, "completion"),
		cached:    m.tokens.WithLabelValues(k.provider, k.model, "cached"),
		cost:      m.cost.WithLabelValues(k.provider, k.model),
		retries:   m.retries.WithLabelValues(k.model),
		fallbacks: m.fallbacks.WithLabelValues(k.model),
	}
	v, _ := m.cache.LoadOrStore(k, se)
	return v.(*series)
}

// Attempt counts one attempt at a target; model is the upstream model,
// or OtherModel when it is not configured.
func (m *Metrics) Attempt(provider, model string, ok bool) {
	if m == nil {
		return
	}
	k := seriesKey{provider: provider, model: model}
	v, found := m.attemptCache.Load(k)
	if !found {
		v, _ = m.attemptCache.LoadOrStore(k, &[2]prometheus.Counter{
			m.attempts.WithLabelValues(provider, model, "error"), m.attempts.WithLabelValues(provider, model, "ok")})
	}
	c := v.(*[2]prometheus.Counter)
	if ok {
		c[1].Inc()
	} else {
		c[0].Inc()
	}
}

// Refused counts a request refused by a limit.
func (m *Metrics) Refused(reason string) {
	if m == nil {
		return
	}
	m.refusals.WithLabelValues(reason).Inc()
}

// StreamOpened and StreamClosed count the streams being sent.
func (m *Metrics) StreamOpened() {
	if m != nil {
		m.streams.Inc()
	}
}

// StreamClosed: see StreamOpened.
func (m *Metrics) StreamClosed() {
	if m != nil {
		m.streams.Dec()
	}
}

var classes = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// StatusClass is "2xx" for 200 and so on.
func StatusClass(status int) string {
	if i := classIndex(status); i >= 0 {
		return classes[i]
	}
	return strconv.Itoa(status)
}

// classIndex is status's index in classes, or -1 outside 100-599.
func classIndex(status int) int {
	if i := status/100 - 1; i >= 0 && i < len(classes) {
		return i
	}
	return -1
}
