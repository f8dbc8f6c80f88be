// Command anthropic is the LLM Proxy provider plugin for Anthropic's
// Messages API (Claude): OpenAI chat requests are translated into Messages
// requests, and answers and event streams back into OpenAI's shapes, so an
// OpenAI client cannot tell which provider answered. Clients of the proxy's
// own /v1/messages reach it through Messages, a passthrough.
//
// The plugin runs on ABI 2's callbacks: a Plugin method translates the
// request and sends it, and the answer comes back to a Handler, a whole
// Message to its Body function, a stream event by event to a per-stream
// translator (stream.go). An instance serves many streams at once,
// interleaved, so nothing that must outlive a callback is kept in package
// variables; those hold only scratch buffers, reused by one callback after
// another.
//
// The translation works on raw JSON bytes (sdk/rawjson): values that need
// no change are copied as they came and nothing is decoded with reflection,
// so the guest stays cheap per request and per streamed event. What is
// mapped, and what is not, is listed in request.go, response.go and
// stream.go, and in the README's section on this plugin.
//
// Provider options (all optional):
//
//	max_tokens         max_tokens sent when the request has none (4096)
//	anthropic_version  the anthropic-version header ("2023-06-01")
//	anthropic_beta     an anthropic-beta header, e.g. for a beta feature
package main

import (
	"errors"
	"strconv"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/chatreq"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// maxBody bounds a non-streamed upstream body the plugin translates; the
// host enforces its own, configurable limit as well.
const maxBody = 64 << 20

// maxErrorBody is how much of an upstream error body is passed on.
const maxErrorBody = 64 << 10

// Defaults of the provider options.
const (
	defaultMaxTokens = 4096
	defaultVersion   = "2023-06-01"
)

type plugin struct{ sdk.Unimplemented }

// settings are a provider's options, decoded once per provider and instance.
type settings struct {
	maxTokens []byte // a JSON number
	headers   [][2]string
	messages  string // the URL of /v1/messages
	models    string // the URL of the model list
}

var settingsCache = map[*sdk.Config]*settings{}

func settingsFor(cfg *sdk.Config) *settings {
	if s, ok := settingsCache[cfg]; ok {
		return s
	}
	s := &settings{messages: cfg.BaseURL + "/v1/messages", models: cfg.BaseURL + "/v1/models?limit=1000"}
	n := int64(defaultMaxTokens)
	if v, ok := cfg.OptionInt("max_tokens"); ok && v > 0 {
		n = v
	}
	s.maxTokens = strconv.AppendInt(nil, n, 10)
	version := defaultVersion
	if str, ok := cfg.OptionString("anthropic_version"); ok && str != "" {
		version = str
	}
	s.headers = [][2]string{{"Content-Type", "application/json"}, {"anthropic-version", version}}
	if str, ok := cfg.OptionString("anthropic_beta"); ok && str != "" {
		s.headers = append(s.headers, [2]string{"anthropic-beta", str})
	}
	if len(settingsCache) > 32 {
		clear(settingsCache)
	}
	settingsCache[cfg] = s
	return s
}

func (plugin) Chat(s *sdk.Stream) error { return chat(s, false) }

func (plugin) ChatStream(s *sdk.Stream) error { return chat(s, true) }

// chat sends the translated request to /v1/messages; the Message, or the
// stream of events, is translated back by the Handler's functions.
func chat(s *sdk.Stream, stream bool) error {
	cfg, err := s.Config()
	if err != nil {
		return err
	}
	set := settingsFor(cfg)
	body, err := translateRequest(s, set, stream)
	if err != nil {
		return err
	}
	h := sdk.Handler{Error: failUpstream}
	if stream {
		t := newStreamer()
		h.Head, h.Event, h.End = t.onHead, t.onEvent, t.onEnd
	} else {
		h.Body, h.End = completion, noBody
	}
	return s.Send(sdk.Request{Method: "POST", URL: set.messages, Header: set.headers, Body: body}, h)
}

// Messages passes a Messages API request through as the client sent it
// (the host has set the model): the answer, a Message or its stream of
// events, is relayed unchanged, so thinking blocks and their signatures,
// cache_control markers and server-tool blocks survive both ways. Errors
// are translated like chat's, and the host gives them back to the client
// in the Messages API's shape.
func (plugin) Messages(s *sdk.Stream) error {
	cfg, err := s.Config()
	if err != nil {
		return err
	}
	set := settingsFor(cfg)
	return s.Send(sdk.Request{Method: "POST", URL: set.messages, Header: set.headers, Body: s.Request()},
		sdk.Handler{Relay: true, Error: failUpstream})
}

// completion translates a Message, a successful answer's whole body, into
// the chat.completion the stream answers with.
func completion(s *sdk.Stream, r *sdk.Response, body []byte) error {
	msg, err := readJSON(s, body)
	if err != nil {
		return err
	}
	// The Messages API sends no timestamp: created is the response's Date.
	out, err := buildCompletion(msg, chatreq.Created(r))
	if err != nil {
		return err
	}
	return s.EmitBody(out)
}

// noBody is the End of a non-streamed request. Body answers the stream; if
// no body ever reached it, the answer is what an empty body gets: the
// upstream's answer is not JSON.
func noBody(s *sdk.Stream) error {
	if s.Ended() {
		return nil
	}
	return errUpstreamBody
}

// The request's Doc and the responses' tape, scratch reused by one callback
// after another. The request's whole Doc is kept, not only its tape: the
// compiler cannot tell that the values read from it do not outlive the
// callback, so a local Doc would be moved to the heap, an allocation per
// request. Neither outlives the callback that fills it.
var (
	reqDoc   rawjson.Doc
	respTape []uint32
)

// translateRequest indexes the unified request and translates it. The
// result is a package buffer, valid until the next translation: Send copies
// it.
func translateRequest(s *sdk.Stream, set *settings, stream bool) ([]byte, error) {
	var err error
	reqDoc, err = s.ParseJSON(s.Request(), reqDoc.Tape)
	if err != nil {
		return nil, chatreq.BadRequest("", "the request body is not valid JSON")
	}
	return buildRequest(reqDoc.Root(), set, stream, s.ParseJSON)
}

// readJSON indexes a successful answer's whole body and returns its root.
func readJSON(s *sdk.Stream, body []byte) (rawjson.Value, error) {
	if len(body) > maxBody {
		return rawjson.Value{}, &sdk.StatusError{Op: "http_read", Status: abi.StatusLimit}
	}
	doc, err := s.ParseJSON(body, respTape)
	respTape = doc.Tape
	if errors.Is(err, rawjson.ErrSyntax) {
		return rawjson.Value{}, errUpstreamBody
	}
	if err != nil {
		return rawjson.Value{}, err
	}
	return doc.Root(), nil
}

// errUpstreamBody reports an upstream answer that is not JSON.
var errUpstreamBody = &sdk.HTTPError{Status: 502, Message: "the upstream answered with a body that is not JSON"}

// Models lists the upstream's models (GET /v1/models) as an OpenAI model
// list; the proxy's provider connection test uses it.
func (plugin) Models(s *sdk.Stream) error {
	cfg, err := s.Config()
	if err != nil {
		return err
	}
	set := settingsFor(cfg)
	return s.Send(sdk.Request{Method: "GET", URL: set.models, Header: set.headers[1:]},
		sdk.Handler{Body: modelList, End: noBody, Error: failUpstream})
}

// modelList translates the answer to GET /v1/models.
func modelList(s *sdk.Stream, _ *sdk.Response, body []byte) error {
	list, err := readJSON(s, body)
	if err != nil {
		return err
	}
	out, err := buildModelList(list)
	if err != nil {
		return err
	}
	return s.EmitBody(out)
}

// failUpstream passes an upstream error on: it is the Handlers' Error.
// Anthropic's error bodies, {"type":"error","error":{"type":...,
// "message":...}}, already carry what the host reads (error.message,
// error.type). 529 (overloaded) becomes 503, which the host keeps, so
// clients see a retryable "service unavailable" rather than a generic 502.
func failUpstream(s *sdk.Stream, r *sdk.Response, body []byte) error {
	if len(body) > maxErrorBody {
		body = body[:maxErrorBody]
	}
	status := r.StatusCode
	if status == 529 {
		status = 503
	}
	if len(body) == 0 {
		body = []byte("upstream returned HTTP " + strconv.Itoa(r.StatusCode))
	}
	return s.Fail(status, body)
}

// statusForError maps the type of an Anthropic error object (as sent in a
// stream's error event) to the HTTP status the API uses for it.
func statusForError(typ rawjson.Value) int {
	t, _ := typ.Str()
	switch string(t) {
	case "invalid_request_error":
		return 400
	case "authentication_error":
		return 401
	case "billing_error":
		return 402
	case "permission_error":
		return 403
	case "not_found_error":
		return 404
	case "request_too_large":
		return 413
	case "rate_limit_error":
		return 429
	case "overloaded_error":
		return 503
	case "timeout_error":
		return 504
	}
	return 502
}

func init() { sdk.Register(plugin{}) }

func main() {}
