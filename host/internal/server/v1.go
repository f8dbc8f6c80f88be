package server

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/bodylog"
	"github.com/llm-proxy/llm-proxy/host/internal/hub"
	"github.com/llm-proxy/llm-proxy/host/internal/ingress"
	"github.com/llm-proxy/llm-proxy/host/internal/jsondepth"
	"github.com/llm-proxy/llm-proxy/host/internal/keys"
	"github.com/llm-proxy/llm-proxy/host/internal/limits"
	"github.com/llm-proxy/llm-proxy/host/internal/metrics"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/host/internal/requestlog"
	"github.com/llm-proxy/llm-proxy/host/internal/router"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
	"github.com/llm-proxy/llm-proxy/host/internal/tracing"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// v1Face registers the OpenAI-compatible API: a client key (or the admin
// key) on every call; bodies are checked by parse.
func (s *Server) v1Face() {
	v1 := s.app.Group("/v1", s.requireClient) // bodies are checked by parse
	v1.Post("/chat/completions", s.chatCompletions)
	v1.Post("/embeddings", s.embeddings)
	v1.Post("/messages", s.messages)
	v1.Post("/messages/count_tokens", s.countTokens)
	v1.Post("/responses", s.responses)
	v1.Get("/responses/:id", s.getResponse)
	v1.Delete("/responses/:id", s.deleteResponse)
	v1.Get("/models", s.listModels)
	v1.Get("/models/+", s.getModel)
}

// request is one /v1 call on its way through the proxy; it becomes the
// request's log line at the end.
type request struct {
	id            string
	keyID         string
	start         time.Time
	op            abi.Op
	face          face // the API the client spoke
	stream        bool
	model         string
	upstreamModel string
	route         *router.Route
	provider      *router.Provider
	attempts      []Attempt
	ticket        *limits.Ticket // the key's limits, until the request ends
	quota         *limits.Ticket // the answering provider's quota, likewise
	version       *plugin.Version
	includeUsage  bool
	usage         usage
	ttfb          time.Duration
	bodies        *bodies // nil unless [logs] bodies is on
	// Of a request that is not a chat completion: the Messages request as
	// the client sent it (fasthttp's buffer, valid during the handler; for
	// providers that take it unchanged), whether
	// the current attempt sends it so, and the Responses it answers with.
	native         []byte
	nativeAttempt  bool
	untranslatable *ingress.BadRequest // why native cannot become a chat request
	resp           *ingress.Responses
	conversation   []byte // the Responses request's messages, for keeping it
	// span is the request's trace span and ctx its context; attemptCtx
	// is the current attempt's, which the plugin's upstream requests
	// are traced under. All nil/empty when tracing is off.
	span       *tracing.Span
	ctx        context.Context
	attemptCtx context.Context
}

// bodies is what the request log keeps of one request's bodies: the first
// max bytes of each, and their full sizes.
type bodies struct {
	max               int
	req, resp         []byte
	reqSize, respSize int
}

// keepResponse keeps a response body the request owns and nobody modifies.
func (b *bodies) keepResponse(body []byte) {
	b.resp, b.respSize = bodylog.Keep(body, b.max), len(body)
}

// appendResponse adds bytes sent to a streaming client; a nil b (body
// logging off) keeps nothing.
func (b *bodies) appendResponse(d []byte) {
	if b == nil {
		return
	}
	b.respSize += len(d)
	if room := b.max - len(b.resp); room > 0 {
		b.resp = append(b.resp, d[:min(room, len(d))]...)
	}
}

type usage struct {
	prompt, completion, cached int64
	known                      bool
}

// set takes a chat completion's usage object.
func (u *usage) set(raw []byte) { u.setFrom(ingress.ChatUsage(raw)) }

func invalid(param, msg string) *apierror.Error {
	return apierror.New(fiber.StatusBadRequest, apierror.NoCode, msg).WithParam(param)
}

// parseRoot checks what every /v1 body must be: JSON, an object of
// bounded depth, one "model" (and "stream") member, and a model name
// plugins can put in a URL.
func parseRoot(body []byte) (gjson.Result, *apierror.Error) {
	if !jsondepth.Within(body, jsondepth.Max) {
		return gjson.Result{}, tooDeep()
	}
	if !gjson.ValidBytes(body) {
		return gjson.Result{}, apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidJSON,
			"We could not parse the JSON body of your request. Send valid JSON.")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return root, invalid("", "The request body must be a JSON object.")
	}
	// The proxy routes on the first "model" while many JSON parsers keep the
	// last: a repeated control key could send one model's request to
	// another's provider, so it is refused.
	var dup string
	seen := 0
	root.ForEach(func(k, _ gjson.Result) bool {
		bit := 0
		switch k.Str {
		case "model":
			bit = 1
		case "stream":
			bit = 2
		case "stream_options":
			bit = 4
		}
		if seen&bit != 0 {
			dup = k.Str
			return false
		}
		seen |= bit
		return true
	})
	if dup != "" {
		return root, invalid(dup, "'"+dup+"' appears more than once in the request body")
	}
	m := root.Get("model")
	if m.Type != gjson.String || m.Str == "" {
		return root, invalid("model", "you must provide a model parameter")
	}
	if !abi.ValidModel(m.Str) {
		// Plugins put model names into upstream URLs.
		return root, apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidModel,
			"A model name is 1 to "+strconv.Itoa(abi.MaxModelLen)+" "+abi.ModelNameRule+".").WithParam("model")
	}
	return root, nil
}

// parse checks the JSON body and the fields the proxy itself relies on; the
// rest is the upstream's to judge.
func parse(body []byte, op abi.Op) (model string, stream bool, includeUsage bool, err *apierror.Error) {
	root, err := parseRoot(body)
	if err != nil {
		return "", false, false, err
	}
	m := root.Get("model")
	switch op {
	case abi.OpChat:
		msgs := root.Get("messages")
		if !msgs.IsArray() || len(msgs.Array()) == 0 {
			return "", false, false, invalid("messages", "'messages' must be a non-empty array")
		}
		if st := root.Get("stream"); st.Exists() && st.Type != gjson.True && st.Type != gjson.False && st.Type != gjson.Null {
			return "", false, false, invalid("stream", "'stream' must be a boolean")
		}
		stream = root.Get("stream").Type == gjson.True
		if so := root.Get("stream_options"); so.Exists() && so.Type != gjson.Null {
			if !so.IsObject() {
				return "", false, false, invalid("stream_options", "'stream_options' must be an object")
			}
			includeUsage = so.Get("include_usage").Type == gjson.True
		}
	case abi.OpEmbeddings:
		if in := root.Get("input"); !in.Exists() || in.Type == gjson.Null {
			return "", false, false, invalid("input", "you must provide an input parameter")
		}
	}
	return m.Str, stream, includeUsage, nil
}

func (s *Server) chatCompletions(c *fiber.Ctx) error { return s.handle(c, faceChat, abi.OpChat) }
func (s *Server) embeddings(c *fiber.Ctx) error      { return s.handle(c, faceChat, abi.OpEmbeddings) }
func (s *Server) messages(c *fiber.Ctx) error        { return s.handle(c, faceMessages, abi.OpChat) }
func (s *Server) responses(c *fiber.Ctx) error       { return s.handle(c, faceResponses, abi.OpChat) }

func (s *Server) handle(c *fiber.Ctx, f face, op abi.Op) error {
	r := &request{id: newRequestID(), keyID: keyID(c), start: time.Now(), op: op, face: f}
	s.inFlight.Add(1) // until logRequest
	c.Set("X-Request-Id", r.id)
	if t := s.opts.Tracer; t != nil {
		r.ctx, r.span = t.StartRequest(requestHeaders{&c.Request().Header}, op.String())
	}
	body := c.Body()
	if n := int(s.logBodyBytes.Load()); n > 0 {
		// fasthttp reuses the request buffer once the handler returns.
		r.bodies = &bodies{max: n, req: bodylog.Copy(body, n), reqSize: len(body)}
	}
	var model string
	var stream, includeUsage bool
	var unified []byte
	var perr *apierror.Error
	if f == faceChat {
		model, stream, includeUsage, perr = parse(body, op)
	} else {
		model, stream, unified, perr = s.translate(r, body)
	}
	if perr != nil {
		return s.finish(c, r, perr)
	}
	r.model, r.includeUsage, r.stream = model, includeUsage, stream
	if r.span != nil {
		r.span.SetName(tracing.OperationName(op.String()) + " " + model)
		r.span.Set(semconv.GenAIRequestModel(model))
	}
	if s.opts.Hub.Active() {
		s.opts.Hub.Publish(hub.RequestStarted, startedEvent{ID: r.id, TS: r.start.UTC(), KeyID: nonAdmin(r.keyID), Model: model, Stream: stream, Op: op.String()})
	}
	if k, ok := c.Locals(keyLocal).(*keys.Key); ok && !k.Allows(model) {
		return s.finish(c, r, apierror.New(fiber.StatusForbidden, apierror.CodeModelNotAllowed,
			"This API key may not use the model '"+model+"'.").WithParam("model"))
	}
	if k, ok := c.Locals(keyLocal).(*keys.Key); ok {
		counted := body
		if unified != nil {
			counted = unified
		}
		if err := s.admit(c, r, k, counted); err != nil {
			return s.finish(c, r, err)
		}
	}
	rt, ok := s.opts.Router.Load().Resolve(model)
	if !ok {
		return s.finish(c, r, apierror.New(fiber.StatusNotFound, apierror.CodeModelNotFound,
			"The model '"+model+"' does not exist or is not served by this proxy.").WithParam("model"))
	}
	r.route = rt
	if stream {
		op = abi.OpChatStream
		r.op = op
	}
	if f == faceChat {
		// The unified request: the client's JSON with, for streams, usage
		// always requested (sdk/ABI.md); each attempt puts its target's
		// model name in.
		unified = body
		var err error
		if stream && !includeUsage {
			if unified, err = sjson.SetBytes(unified, "stream_options.include_usage", true); err != nil {
				return s.finish(c, r, invalid("stream_options", "'stream_options' could not be extended"))
			}
		}
		// The plugin stream may outlive this handler (a client that
		// leaves a stream does not wait for its end): it gets its own copy
		// rather than rely on how long fasthttp keeps the request buffer.
		if &unified[0] == &body[0] {
			unified = bytes.Clone(unified)
		}
	}
	res, apiErr := s.serve(c, r, unified, stream)
	routeHeaders(c, r)
	if apiErr != nil {
		if apiErr.Status == 499 {
			s.logRequest(r, 499, apiErr)
			return nil
		}
		return s.finish(c, r, apiErr)
	}
	if stream {
		return s.stream(c, r, res.st, res.stream)
	}
	sink := res.buffer
	answer := sink.body
	if f == faceChat {
		if sink.usage != nil {
			r.usage.set(sink.usage)
		} else if u := gjson.GetBytes(sink.body, "usage"); u.IsObject() {
			r.usage.set([]byte(u.Raw))
		}
	} else {
		answer = s.translateAnswer(r, sink)
	}
	r.ttfb = time.Since(r.start)
	if r.bodies != nil {
		// The answer is this request's own, and fasthttp only reads it.
		r.bodies.keepResponse(answer)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Status(fiber.StatusOK).Send(answer)
	return s.finish(c, r, nil)
}

// clientCheckEvery is how often a non-streamed request that is waiting for
// its answer checks whether its client is still there.
var clientCheckEvery = 500 * time.Millisecond

// waitUnlessGone waits for done and reports true, or reports false as soon
// as the client has closed its connection.
func waitUnlessGone(c *fiber.Ctx, done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
	}
	t := time.NewTicker(clientCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return true
		case <-t.C:
			if connClosed(c.Context().Conn()) {
				return false
			}
		}
	}
}

// open starts the operation on the provider's plugin; the outcome reaches
// sink. A version retired between lookup and start (a hot reload) is
// retried on its successor: nothing of the stream ran on it.
func (s *Server) open(r *request, unified []byte, sink plugin.Sink) (*plugin.Stream, *apierror.Error) {
	for attempt := 0; ; attempt++ {
		v, err := s.opts.Plugins.Lookup(r.provider.Plugin)
		if err != nil {
			return nil, apierror.New(fiber.StatusServiceUnavailable, apierror.CodePluginNotLoaded,
				"The plugin '"+r.provider.Plugin+"' of provider '"+r.provider.Name+"' is not loaded.")
		}
		r.version = v
		if capability := capabilityOf(r.op); !v.Manifest.Has(capability) {
			return nil, apierror.New(fiber.StatusBadRequest, apierror.CodeUnsupportedOperation,
				"Provider '"+r.provider.Name+"' does not support "+capability+".")
		}
		st, err := v.Open(plugin.Invocation{
			Op: r.op, Request: unified, Config: r.provider.GuestConfig,
			Egress: r.provider.Egress, Sink: sink, Context: r.attemptCtx,
		})
		switch {
		case err == nil:
			return st, nil
		case errors.Is(err, plugin.ErrRetired) && attempt < 3:
			continue
		case errors.Is(err, plugin.ErrBusy):
			return nil, apierror.New(fiber.StatusServiceUnavailable, apierror.CodePluginBusy, "Every instance of the provider plugin is full; retry shortly.")
		}
		return nil, apierror.New(fiber.StatusBadGateway, apierror.CodePluginFailed, "The provider plugin failed while handling the request.")
	}
}

func capabilityOf(op abi.Op) string {
	switch op {
	case abi.OpChatStream:
		return abi.CapChatStream
	case abi.OpEmbeddings:
		return abi.CapEmbeddings
	case abi.OpModels:
		return abi.CapModels
	case abi.OpMessages, abi.OpMessagesStream:
		return abi.CapMessages
	}
	return abi.CapChat
}

// finish writes err (if any) and logs the request.
func (s *Server) finish(c *fiber.Ctx, r *request, err *apierror.Error) error {
	status := fiber.StatusOK
	if err != nil {
		status = err.Status
		if e := s.handleError(c, err); e != nil {
			return e
		}
		if r.bodies != nil {
			r.bodies.keepResponse(s.errorBody(c, err)) // what handleError sent
		}
	}
	s.logRequest(r, status, err)
	return nil
}

// logRequest records a finished request: one row for the request log
// and, when info logging is on, one log line with the same fields.
func (s *Server) logRequest(r *request, status int, err *apierror.Error) {
	s.inFlight.Add(-1)
	latency := time.Since(r.start)
	e := requestlog.Entry{RequestLog: store.RequestLog{
		ID: r.id, TS: r.start.UnixMilli(), KeyID: nullString(nonAdmin(r.keyID)), Model: r.model, Status: status,
		LatencyMS: ms(latency), TTFBMS: ms(r.ttfb), Stream: r.stream, API: r.face.String(),
		PromptTokens: r.usage.prompt, CompletionTokens: r.usage.completion, CachedTokens: r.usage.cached,
		CostUSD:  s.opts.Prices.Cost(r.model, r.upstreamModel, r.usage.prompt, r.usage.completion, r.usage.cached),
		Attempts: max(len(r.attempts), 1),
	}}
	if b := r.bodies; b != nil {
		e.RequestBytes, e.ResponseBytes, e.RequestSize, e.ResponseSize = b.req, b.resp, b.reqSize, b.respSize
	}
	r.ticket.Done(r.usage.prompt+r.usage.completion, e.CostUSD)
	r.quota.Done(r.usage.prompt+r.usage.completion, 0)
	if len(r.attempts) > 1 {
		attempts, _ := json.Marshal(r.attempts)
		e.AttemptLog = nullString(string(attempts))
	}
	if r.provider != nil {
		e.Provider = r.provider.Name
	}
	if r.version != nil {
		e.Plugin, e.PluginVersion = r.version.Manifest.Name, r.version.Manifest.Version
	}
	if err != nil {
		e.ErrorType = nullString(err.Type)
	}
	if r.span != nil {
		e.TraceID = r.span.TraceID()
		s.endSpan(r, &e, err)
	}
	if s.opts.Requests != nil {
		s.opts.Requests.Log(e)
	}
	s.observe(r, &e, latency)
	ctx := context.Background()
	if !s.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("id", e.ID), slog.String("key", r.keyID), slog.String("op", r.op.String()),
		slog.String("model", e.Model), slog.Int("status", status),
		slog.Duration("latency", latency), slog.Duration("ttfb", r.ttfb),
	}
	if r.face != faceChat {
		attrs = append(attrs, slog.String("api", e.API))
	}
	if e.Provider != "" {
		attrs = append(attrs, slog.String("provider", e.Provider))
	}
	if e.Plugin != "" {
		attrs = append(attrs, slog.String("plugin", e.Plugin+"@"+e.PluginVersion))
	}
	if r.usage.known {
		attrs = append(attrs, slog.Int64("prompt_tokens", e.PromptTokens), slog.Int64("completion_tokens", e.CompletionTokens),
			slog.Int64("cached_tokens", e.CachedTokens), slog.Float64("cost_usd", e.CostUSD))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error_type", err.Type), slog.String("error_code", string(err.Code)))
	}
	if e.TraceID != "" {
		attrs = append(attrs, slog.String("trace_id", e.TraceID))
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
}

// nullString is s as a nullable column: NULL when empty.
func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func keyID(c *fiber.Ctx) string {
	if v, ok := c.Locals(keyIDLocal).(string); ok {
		return v
	}
	return ""
}

func (s *Server) listModels(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"object": "list", "data": s.opts.Router.Load().Models()})
}

func (s *Server) getModel(c *fiber.Ctx) error {
	id := c.Params("+")
	for _, m := range s.opts.Router.Load().Models() {
		if m.ID == id {
			return c.JSON(m)
		}
	}
	return apierror.New(fiber.StatusNotFound, apierror.CodeModelNotFound, "The model '"+id+"' does not exist or is not served by this proxy.").WithParam("model")
}

// stream sends a stream that has begun (serve saw its first event): an
// upstream error from here on becomes an error event followed by a clean
// end (writeStream). An error before the first event kept its status, and
// may have been retried.
func (s *Server) stream(c *fiber.Ctx, r *request, st *plugin.Stream, sink *streamSink) error {
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set(fiber.HeaderConnection, "keep-alive")
	c.Set("X-Accel-Buffering", "no")
	c.Status(fiber.StatusOK)
	conn := c.Context().Conn()
	// fasthttp runs this on a goroutine of its own once the handler
	// returns, and copies what it writes to the connection; it is always
	// called.
	s.opts.Metrics.StreamOpened()
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer s.opts.Metrics.StreamClosed()
		s.writeStream(w, conn, sink, st, r)
	})
	return nil
}

// observe counts a finished request in the metrics.
func (s *Server) observe(r *request, e *requestlog.Entry, latency time.Duration) {
	m := s.opts.Metrics
	if m == nil {
		return
	}
	mr := metrics.Request{KeyID: e.KeyID.String, Provider: cmp.Or(e.Provider, metrics.NoProvider), Model: s.metricModel(r),
		Operation: r.op.String(), Status: e.Status, Duration: latency, TTFB: r.ttfb,
		Prompt: e.PromptTokens, Output: e.CompletionTokens, Cached: e.CachedTokens, CostUSD: e.CostUSD}
	if n := len(r.attempts); n > 1 {
		first, last := r.attempts[0], r.attempts[n-1]
		mr.Retries = n - 1
		mr.Fallback = last.Status == fiber.StatusOK && (last.Provider != first.Provider || last.Model != first.Model)
	}
	m.Observe(mr)
}

// metricModel is the request's model as a metric label: a name the
// configuration knows (a route's or a provider's model), or
// metrics.OtherModel for the names clients make up (unknown ones, and
// "provider/<any model>").
func (s *Server) metricModel(r *request) string {
	rt := r.route
	if rt == nil {
		if rt, _ = s.opts.Router.Load().Resolve(r.model); rt == nil {
			return metrics.OtherModel
		}
	}
	if !rt.Configured && len(rt.Targets) == 1 && strings.HasSuffix(rt.Targets[0].Key, "/*") {
		return metrics.OtherModel
	}
	return r.model
}

// startedEvent is the live view's notice of a request being served.
type startedEvent struct {
	ID     string    `json:"id"`
	TS     time.Time `json:"ts"`
	KeyID  string    `json:"key_id,omitempty"`
	Model  string    `json:"model"`
	Stream bool      `json:"stream"`
	Op     string    `json:"op"`
}

// nonAdmin is a key id as logs show it: empty for the admin key.
func nonAdmin(keyID string) string {
	if keyID == "admin" {
		return ""
	}
	return keyID
}
