package server

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/tidwall/sjson"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/keys"
	"github.com/llm-proxy/llm-proxy/host/internal/limits"
	"github.com/llm-proxy/llm-proxy/host/internal/metrics"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/host/internal/router"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// Routing is how the /v1 face retries a request over its route's targets.
type Routing struct {
	// MaxAttempts bounds a request's attempts when its route sets none;
	// below 1 is 1.
	MaxAttempts int
	// RetryDeadline: no attempt starts later than this after the request
	// began; 0 is 30 s.
	RetryDeadline time.Duration
	// BackoffBase and BackoffMax bound the wait before trying a target
	// again (router.Backoff).
	BackoffBase, BackoffMax time.Duration
}

// Attempt is one try of a request on one target, as the request log keeps
// it.
type Attempt struct {
	Provider string  `json:"provider"`
	Model    string  `json:"model"`
	Status   int     `json:"status"`          // the upstream's, when it answered an error
	Error    string  `json:"error,omitempty"` // the error's code or type
	Ms       float64 `json:"ms"`
	// Waited is the backoff before the attempt, in milliseconds.
	Waited float64 `json:"waited_ms,omitempty"`
}

// verdict is what an attempt's end means for the request.
type verdict struct {
	err     *apierror.Error // nil: served
	retry   bool            // another attempt may succeed
	outcome router.Outcome  // for the target's breaker
	rest    time.Duration   // the upstream's Retry-After
	context bool            // the prompt exceeds the model's context window
	status  int             // the status the plugin failed with, if it did
}

// judge classifies how an attempt ended: end is the plugin stream's end
// (or its failure to open, as an apierror).
func judge(end error, openErr *apierror.Error) verdict {
	if openErr != nil {
		// The plugin is not loaded, busy or lacks the operation, or the
		// request holds what this target cannot be sent: another target
		// may use another plugin; the upstream was not asked.
		retry := openErr.Status == fiber.StatusServiceUnavailable ||
			openErr.Code == apierror.CodeUnsupportedContent || openErr.Code == apierror.CodeUnsupportedOperation
		return verdict{err: openErr, retry: retry, outcome: router.Ignored}
	}
	apiErr := endError(end)
	v := verdict{err: apiErr}
	var f *plugin.Failure
	switch {
	case end == nil:
	case errors.As(end, &f):
		v.status = f.Status
		switch {
		case f.Status == http.StatusTooManyRequests, f.Status == http.StatusRequestTimeout,
			f.Status >= 500 && f.Status != http.StatusNotImplemented && f.Status != http.StatusHTTPVersionNotSupported:
			// 529 is Anthropic's "overloaded".
			v.retry, v.outcome = true, router.Failure
			if f.Status == http.StatusTooManyRequests || f.Status == http.StatusServiceUnavailable || f.Status == 529 {
				v.rest = parseRetryAfter(f.RetryAfter, time.Now())
			}
		case f.Status == http.StatusBadRequest && contextOverflow(apiErr):
			v.context = true
		}
	case errors.Is(end, plugin.ErrTimeout):
		v.retry, v.outcome = true, router.Failure
	case errors.Is(end, plugin.ErrClientGone):
		v.outcome = router.Ignored
	default:
		// A plugin that failed says nothing about the upstream.
		v.outcome = router.Ignored
	}
	return v
}

// contextOverflow recognises the providers' ways of saying that a prompt
// does not fit the model's context window.
func contextOverflow(e *apierror.Error) bool {
	if e == nil {
		return false
	}
	if e.Code == apierror.CodeContextLengthExceeded {
		return true
	}
	m := strings.ToLower(e.Message)
	for _, s := range []string{"context length", "context window", "context_length", "maximum context", "prompt is too long", "input is too long", "exceeds the maximum number of tokens"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// parseRetryAfter reads a Retry-After value: seconds, or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs <= 0 || secs > 24*3600 {
			return 0
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 && d <= 24*time.Hour {
			return d
		}
	}
	return 0
}

// upstreamBody is the unified request for target t: the client's JSON with
// t's model name.
func upstreamBody(body []byte, clientModel string, t *router.Target) ([]byte, *apierror.Error) {
	if t.Model == clientModel {
		return body, nil
	}
	out, err := sjson.SetBytes(body, "model", t.Model)
	if err != nil {
		return nil, invalid("model", "the model parameter could not be rewritten")
	}
	return out, nil
}

// try is one attempt's result for serve.
type try struct {
	end     error
	openErr *apierror.Error
	st      *plugin.Stream
	buffer  *bufferSink
	stream  *streamSink
}

// serve runs a request's attempts over its route until one is served, one
// fails in a way another attempt cannot help, or the attempts or the
// deadline run out. Only attempts whose answer has not begun are retried:
// a stream's first event commits it. It returns the attempt that answered
// and its error for the client, if any.
func (s *Server) serve(c *fiber.Ctx, r *request, body []byte, stream bool) (*try, *apierror.Error) {
	rt := r.route
	if len(rt.Targets) == 0 {
		return nil, apierror.New(fiber.StatusServiceUnavailable, apierror.CodeNoTarget,
			"No provider of the route '"+rt.Model+"' is being served.")
	}
	h := s.opts.Health
	// A route of one target always tries it: resting it would only turn
	// the upstream's errors into the proxy's.
	single := len(rt.Targets) == 1 && rt.ContextFallback == nil
	plan := []int{0}
	if !single {
		plan = router.Plan(rt.Strategy, h.Candidates(rt.Targets), rand.Uint64())
	}
	if r.span != nil {
		s.traceRoute(r, len(plan))
	}
	if len(plan) == 0 {
		e := allResting(r.model)
		if until := h.RestingUntil(rt.Targets); !until.IsZero() {
			e.RetryAfter = strconv.Itoa(max(1, int(time.Until(until).Seconds()+0.999)))
		}
		return nil, e
	}
	maxAttempts := rt.MaxAttempts
	if maxAttempts < 1 {
		maxAttempts = max(s.opts.Routing.MaxAttempts, 1)
	}
	deadline := s.opts.Routing.RetryDeadline
	if deadline <= 0 {
		deadline = 30 * time.Second
	}
	deadlineAt := r.start.Add(deadline)

	// Per target, by index (the context fallback last): attempts made and
	// the upstream's last Retry-After.
	var triesBuf [4]int
	var restsBuf [4]time.Duration
	tries, rests := triesBuf[:], restsBuf[:]
	if n := len(rt.Targets) + 1; n > len(triesBuf) {
		tries, rests = make([]int, n), make([]time.Duration, n)
	}
	var last verdict
	var quotaWait time.Duration // the soonest a provider's own limit allows a request again
	useContextFallback, skipped, next := false, 0, 0
	for len(r.attempts) < maxAttempts {
		var t *router.Target
		ti := len(rt.Targets)
		if useContextFallback {
			t, useContextFallback = rt.ContextFallback, false
		} else {
			ti = plan[next%len(plan)]
			t = &rt.Targets[ti]
			next++
		}
		var wait time.Duration
		if n := tries[ti]; n > 0 {
			wait = router.Backoff(n, s.opts.Routing.BackoffBase, s.opts.Routing.BackoffMax, rand.Float64())
			if rest := rests[ti]; rest > 0 {
				if rest > max(s.opts.Routing.BackoffMax, time.Second) {
					// Waiting that long would hold the client for
					// nothing: it gets the 429 and its Retry-After.
					break
				}
				wait = max(wait, rest)
			}
			if time.Now().Add(wait).After(deadlineAt) {
				break
			}
			if !sleepUnlessGone(c, wait) {
				return nil, endError(plugin.ErrClientGone)
			}
		} else if time.Now().After(deadlineAt) {
			break
		}
		quota, refused := s.admitProvider(t.Provider, body)
		if refused > 0 {
			// The provider's own limit is reached: like an open breaker,
			// no attempt is spent on it.
			quotaWait = cmp.Or(min(quotaWait, refused), refused)
			if skipped++; skipped > len(plan) {
				break
			}
			continue
		}
		if !h.Begin(t.Key, single) {
			// Its breaker opened since the plan was made, or another
			// request holds its probe: no attempt is spent on it.
			quota.Done(0, 0)
			if skipped++; skipped > len(plan) {
				break
			}
			continue
		}
		tries[ti]++
		began := time.Now()
		span := s.startAttempt(r, t)
		res := s.attempt(c, r, body, t, stream)
		v := judge(res.end, res.openErr)
		if res.openErr != nil && single {
			// The same plugin would refuse again.
			v.retry = false
		}
		ttfb := time.Duration(0)
		if v.err == nil || v.outcome == router.Success {
			ttfb = time.Since(began)
		}
		h.End(t.Key, v.outcome, ttfb, v.rest)
		a := Attempt{Provider: t.Provider.Name, Model: t.Model, Status: fiber.StatusOK,
			Ms: float64(time.Since(began).Microseconds()) / 1000, Waited: float64(wait.Microseconds()) / 1000}
		if v.err != nil {
			a.Status, a.Error = cmp.Or(v.status, v.err.Status), cmp.Or(string(v.err.Code), v.err.Type)
		}
		r.attempts = append(r.attempts, a)
		s.opts.Metrics.Attempt(t.Provider.Name, attemptModel(t), v.err == nil)
		if span != nil {
			span.Set(semconv.HTTPResponseStatusCode(a.Status))
			span.End(errorType(v.err))
		}
		if v.err == nil || v.err.Status == 499 {
			r.quota = quota
			return res, v.err
		}
		quota.Done(0, 0)
		last, rests[ti] = v, v.rest
		switch {
		case v.context && rt.ContextFallback != nil && t != rt.ContextFallback:
			useContextFallback = true
		case !v.retry:
			return res, v.err
		}
	}
	if last.err == nil && quotaWait > 0 {
		s.opts.Metrics.Refused("provider_quota")
		e := apierror.New(fiber.StatusTooManyRequests, apierror.CodeProviderRateLimited,
			"The providers of the model '"+r.model+"' are at the request or token rate the proxy allows them; retry after the time in Retry-After.")
		e.RetryAfter = strconv.Itoa(max(1, int(math.Ceil(quotaWait.Seconds()))))
		return nil, e
	}
	if last.err == nil {
		return nil, allResting(r.model)
	}
	return nil, last.err
}

// admitProvider counts an attempt against its provider's quota. It
// returns the quota's ticket (nil when the provider has none), or how long
// until the quota could let it through.
// attemptModel is a target's upstream model as a metric label:
// metrics.OtherModel for one a client named freely.
func attemptModel(t *router.Target) string {
	if strings.HasSuffix(t.Key, "/*") {
		return metrics.OtherModel
	}
	return t.Model
}

func (s *Server) admitProvider(p *router.Provider, body []byte) (*limits.Ticket, time.Duration) {
	q := p.Quota
	if s.opts.Limits == nil || (q.RPM == 0 && q.TPM == 0 && q.MaxParallel == 0) {
		return nil, 0
	}
	var tokens int64
	if q.TPM > 0 {
		prompt, completion := estimateTokens(body)
		tokens = prompt + completion
	}
	t, st := s.opts.Limits.Admit(context.Background(), limits.Request{KeyID: "provider\x00" + p.Name,
		Limits: keys.Limits{RPM: q.RPM, TPM: q.TPM, MaxParallel: q.MaxParallel}, Tokens: tokens})
	if st.Refused != "" {
		return nil, max(st.RetryAfter, time.Second)
	}
	return t, 0
}

// allResting is the answer when every target of a route is resting.
func allResting(model string) *apierror.Error {
	return apierror.New(fiber.StatusServiceUnavailable, apierror.CodeUpstreamUnavailable,
		"Every provider of the model '"+model+"' is failing; the proxy rests them for a while. Retry later.")
}

// attempt runs the request once on target t and waits until its answer
// is decided: a non-streamed answer in full, a stream at its first event
// or its end.
func (s *Server) attempt(c *fiber.Ctx, r *request, body []byte, t *router.Target, stream bool) *try {
	r.provider, r.upstreamModel, r.version = t.Provider, t.Model, nil
	if r.native != nil {
		// A Messages request goes unchanged to a provider that takes
		// them, translated to any other.
		r.nativeAttempt = s.pluginHas(t.Provider.Plugin, abi.CapMessages)
		switch {
		case r.nativeAttempt && stream:
			body, r.op = bytes.Clone(r.native), abi.OpMessagesStream
		case r.nativeAttempt:
			body, r.op = bytes.Clone(r.native), abi.OpMessages
		case stream:
			r.op = abi.OpChatStream
		default:
			r.op = abi.OpChat
		}
		if !r.nativeAttempt && r.untranslatable != nil {
			return &try{openErr: badRequest(r.untranslatable)}
		}
	}
	unified, perr := upstreamBody(body, r.model, t)
	if perr != nil {
		return &try{openErr: perr}
	}
	if stream {
		sink := newStreamSink(r)
		st, err := s.open(r, unified, sink)
		if err != nil {
			return &try{openErr: err}
		}
		<-sink.decided
		started, end := sink.started()
		if !started && end == nil {
			end = plugin.ErrNoResponse
		}
		if started {
			end = nil
		}
		return &try{end: end, st: st, stream: sink}
	}
	sink := newBufferSink()
	st, err := s.open(r, unified, sink)
	if err != nil {
		return &try{openErr: err}
	}
	if !waitUnlessGone(c, sink.done) {
		// The client left: its upstream request is cancelled rather than
		// run to the end for nobody.
		st.Cancel()
		<-sink.done
		return &try{end: plugin.ErrClientGone, st: st, buffer: sink}
	}
	end := sink.err
	if end == nil && sink.body == nil {
		end = plugin.ErrNoResponse
	}
	return &try{end: end, st: st, buffer: sink}
}

// sleepUnlessGone waits d, and reports false as soon as the client has
// closed its connection.
func sleepUnlessGone(c *fiber.Ctx, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	done := make(chan struct{})
	t := time.AfterFunc(d, func() { close(done) })
	defer t.Stop()
	return waitUnlessGone(c, done)
}

// routeHeaders tell the client which target answered and after how many
// attempts.
func routeHeaders(c *fiber.Ctx, r *request) {
	if len(r.attempts) == 0 {
		return
	}
	a := r.attempts[len(r.attempts)-1]
	c.Set("X-LLM-Proxy-Provider", a.Provider)
	c.Set("X-LLM-Proxy-Model", a.Model)
	c.Set("X-LLM-Proxy-Attempts", strconv.Itoa(len(r.attempts)))
}
