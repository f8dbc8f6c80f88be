// Command anthropic is the LLM Proxy provider plugin for Anthropic's
// Messages API (Claude): OpenAI chat requests are translated into Messages
// requests, and answers and event streams back into OpenAI's shapes, so an
// OpenAI client cannot tell which provider answered.
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
	"github.com/llm-proxy/llm-proxy/sdk/chatreq"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// maxBody bounds a non-streamed upstream body that the plugin buffers; the
// host enforces its own, configurable limit as well.
const maxBody = 64 << 20

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
}

var settingsCache = map[*sdk.Config]*settings{}

func settingsFor(cfg *sdk.Config) *settings {
	if s, ok := settingsCache[cfg]; ok {
		return s
	}
	s := &settings{}
	n := int64(defaultMaxTokens)
	var v int64
	if cfg.Option("max_tokens", &v) && v > 0 {
		n = v
	}
	s.maxTokens = strconv.AppendInt(nil, n, 10)
	version := defaultVersion
	var str string
	if cfg.Option("anthropic_version", &str) && str != "" {
		version = str
	}
	s.headers = [][2]string{{"Content-Type", "application/json"}, {"anthropic-version", version}}
	if cfg.Option("anthropic_beta", &str) && str != "" {
		s.headers = append(s.headers, [2]string{"anthropic-beta", str})
	}
	if len(settingsCache) > 32 {
		clear(settingsCache)
	}
	settingsCache[cfg] = s
	return s
}

func (plugin) Chat(c *sdk.Call) error { return chat(c, false) }

func (plugin) ChatStream(c *sdk.Call) error { return chat(c, true) }

// chat sends the translated request to /v1/messages and translates the
// Message, or the stream of events, back.
func chat(c *sdk.Call, stream bool) error {
	cfg, err := c.Config()
	if err != nil {
		return err
	}
	s := settingsFor(cfg)
	body, err := translateRequest(c, s, stream)
	if err != nil {
		return err
	}
	resp, err := c.Send("POST", cfg.BaseURL+"/v1/messages", s.headers, body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return failUpstream(c, resp)
	}
	// The Messages API sends no timestamp: created is the response's Date.
	if stream {
		return translateStream(c, resp, chatreq.Created(resp))
	}
	doc, err := resp.ReadJSON(maxBody, respTape)
	respTape = doc.Tape
	if errors.Is(err, rawjson.ErrSyntax) {
		return errUpstreamBody
	}
	if err != nil {
		return err
	}
	out, err := buildCompletion(doc.Root(), chatreq.Created(resp))
	if err != nil {
		return err
	}
	return c.EmitBody(out)
}

// The request's Doc and the responses' tape, reused across the calls of a
// warm instance. The request's whole Doc is kept, not only its tape: the
// compiler cannot tell that the values read from it do not outlive the
// call, so a local Doc would be moved to the heap, an allocation per
// request.
var (
	reqDoc   rawjson.Doc
	respTape []uint32
)

// translateRequest indexes the unified request and translates it.
func translateRequest(c *sdk.Call, s *settings, stream bool) ([]byte, error) {
	var err error
	reqDoc, err = c.ParseJSON(c.Request(), reqDoc.Tape)
	if err != nil {
		return nil, chatreq.BadRequest("", "the request body is not valid JSON")
	}
	return buildRequest(reqDoc.Root(), s, stream, c.ParseJSON)
}

// errUpstreamBody reports an upstream answer that is not JSON.
var errUpstreamBody = &sdk.HTTPError{Status: 502, Message: "the upstream answered with a body that is not JSON"}

// Models lists the upstream's models (GET /v1/models) as an OpenAI model
// list; the proxy's provider connection test uses it.
func (plugin) Models(c *sdk.Call) error {
	cfg, err := c.Config()
	if err != nil {
		return err
	}
	s := settingsFor(cfg)
	resp, err := c.Send("GET", cfg.BaseURL+"/v1/models?limit=1000", s.headers[1:], nil)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return failUpstream(c, resp)
	}
	doc, err := resp.ReadJSON(maxBody, respTape)
	respTape = doc.Tape
	if errors.Is(err, rawjson.ErrSyntax) {
		return errUpstreamBody
	}
	if err != nil {
		return err
	}
	out, err := buildModelList(doc.Root())
	if err != nil {
		return err
	}
	return c.EmitBody(out)
}

// failUpstream passes an upstream error on. Anthropic's error bodies,
// {"type":"error","error":{"type":...,"message":...}}, already carry what
// the host reads (error.message, error.type). 529 (overloaded) becomes 503,
// which the host keeps, so clients see a retryable "service unavailable"
// rather than a generic 502.
func failUpstream(c *sdk.Call, resp *sdk.Response) error {
	body, _ := resp.ReadAll(64 << 10)
	status := resp.StatusCode
	if status == 529 {
		status = 503
	}
	if len(body) == 0 {
		body = []byte("upstream returned HTTP " + strconv.Itoa(resp.StatusCode))
	}
	return c.Fail(status, body)
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
