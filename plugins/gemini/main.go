// Command gemini is the LLM Proxy provider plugin for Google's Gemini API
// (generateContent, streamGenerateContent, embedContent): OpenAI chat and
// embeddings requests are translated into Gemini's, and answers and event
// streams back into OpenAI's shapes.
//
// Like the anthropic plugin, it reads JSON through the host-built tape
// (Call.ParseJSON) and copies values it does not change as raw bytes. What
// is mapped, and what is not, is listed in request.go, response.go and
// stream.go, and in the README's section on this plugin.
//
// The provider's base_url is the API version root,
// https://generativelanguage.googleapis.com/v1beta; the plugin appends
// /models/{model}:generateContent and the like.
package main

import (
	"bytes"
	"errors"
	"strconv"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/chatreq"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// maxBody bounds a non-streamed upstream body that the plugin buffers; the
// host enforces its own, configurable limit as well.
const maxBody = 64 << 20

type plugin struct{ sdk.Unimplemented }

var jsonHeaders = [][2]string{{"Content-Type", "application/json"}}

// The request's Doc and the responses' tape, reused across the calls of a
// warm instance. The request's whole Doc is kept, not only its tape: the
// compiler cannot tell that the values chatreq reads from it do not
// outlive the call, so a Doc local to chat would be moved to the heap, an
// allocation per request.
var (
	reqDoc   rawjson.Doc
	respTape []uint32
)

func (plugin) Chat(c *sdk.Call) error { return chat(c, false) }

func (plugin) ChatStream(c *sdk.Call) error { return chat(c, true) }

func chat(c *sdk.Call, stream bool) error {
	cfg, err := c.Config()
	if err != nil {
		return err
	}
	reqDoc, err = c.ParseJSON(c.Request(), reqDoc.Tape)
	if err != nil {
		return chatreq.BadRequest("", "the request body is not valid JSON")
	}
	req := reqDoc.Root()
	model, ok := req.Get("model").Str()
	if !ok || len(model) == 0 {
		return chatreq.BadRequest("model", "model must be a string")
	}
	body, err := buildRequest(req, c.ParseJSON, c.FetchImage)
	if err != nil {
		return err
	}
	url := modelURL(cfg.BaseURL, model, ":generateContent")
	if stream {
		url = modelURL(cfg.BaseURL, model, ":streamGenerateContent?alt=sse")
	}
	resp, err := c.Send("POST", url, jsonHeaders, body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return failUpstream(c, resp)
	}
	if stream {
		return translateStream(c, resp, chatreq.Created(resp), req.Get("model").Raw())
	}
	rd, err := resp.ReadJSON(maxBody, respTape)
	respTape = rd.Tape
	if errors.Is(err, rawjson.ErrSyntax) {
		return errUpstreamBody
	}
	if err != nil {
		return err
	}
	out, err := buildCompletion(rd.Root(), chatreq.Created(resp), req.Get("model").Raw())
	if err != nil {
		return err
	}
	return c.EmitBody(out)
}

// modelURL is base/models/{model}{method}. A model given with its own
// collection ("tunedModels/x") keeps it.
func modelURL(base string, model []byte, method string) string {
	b := make([]byte, 0, len(base)+len(model)+len(method)+8)
	b = append(b, base...)
	b = append(b, '/')
	if bytes.IndexByte(model, '/') < 0 {
		b = append(b, "models/"...)
	}
	b = append(b, model...)
	b = append(b, method...)
	return string(b)
}

// Models lists the upstream's models (GET /models) as an OpenAI model list;
// the proxy's provider connection test uses it.
func (plugin) Models(c *sdk.Call) error {
	cfg, err := c.Config()
	if err != nil {
		return err
	}
	resp, err := c.Send("GET", cfg.BaseURL+"/models?pageSize=1000", nil, nil)
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
	b := []byte(`{"object":"list","data":[`)
	n := 0
	for e := doc.Root().Get("models").Elements(); e.Next(); n++ {
		name, ok := e.Value().Get("name").Str()
		if !ok {
			return errUpstreamBody
		}
		if len(name) > 7 && string(name[:7]) == "models/" {
			name = name[7:]
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = rawjson.AppendString(b, name)
		b = append(b, `,"object":"model","created":0,"owned_by":"google"}`...)
	}
	return c.EmitBody(append(b, "]}"...))
}

// errUpstreamBody reports an upstream answer that is not what the API
// documents.
var errUpstreamBody = &sdk.HTTPError{Status: 502, Message: "the upstream answered with a body that is not a Gemini API response"}

// failUpstream passes an upstream error on, rewritten into OpenAI's shape.
// Google's errors are {"error":{"code":429,"message":...,"status":
// "RESOURCE_EXHAUSTED","details":[...]}}: the message is kept, the status
// becomes the code and picks the type. The HTTP status is kept; the host
// maps it (401/403 to 502 upstream_auth_failed, 5xx to 502 but 503/504).
func failUpstream(c *sdk.Call, resp *sdk.Response) error {
	body, _ := resp.ReadAll(64 << 10)
	if doc, err := rawjson.Parse(body, nil); err == nil {
		e := doc.Root().Get("error")
		if msg := e.Get("message"); msg.Kind() == rawjson.String {
			status, _ := e.Get("status").Str()
			out := openAIError(msg.Raw(), errorType(string(status), resp.StatusCode), status)
			if wait := retryDelay(e.Get("details")); wait != nil {
				// The host turns retry_after into the client's Retry-After
				// (sdk/ABI.md §7.4): Google names the wait only here.
				out = append(append(append(out[:len(out)-1], `,"retry_after":`...), wait...), '}')
			}
			return c.Fail(resp.StatusCode, out)
		}
	}
	if len(body) == 0 {
		body = []byte("upstream returned HTTP " + strconv.Itoa(resp.StatusCode))
	}
	return c.Fail(resp.StatusCode, body)
}

// retryDelay returns the seconds of the google.rpc.RetryInfo among an
// error's details, {"@type":"type.googleapis.com/google.rpc.RetryInfo",
// "retryDelay":"12.5s"} (a protobuf Duration: decimal seconds and "s"), as
// a JSON number; nil when there is none or it is not that form.
func retryDelay(details rawjson.Value) []byte {
	for d := details.Elements(); d.Next(); {
		if !d.Value().Get("@type").StringIs("type.googleapis.com/google.rpc.RetryInfo") {
			continue
		}
		v, ok := d.Value().Get("retryDelay").Str()
		if !ok || len(v) < 2 || v[len(v)-1] != 's' {
			return nil
		}
		num, dots := v[:len(v)-1], 0
		for i, ch := range num {
			switch {
			case ch == '.' && i > 0 && i < len(num)-1:
				dots++
			case ch < '0' || ch > '9':
				return nil
			}
		}
		if dots > 1 {
			return nil
		}
		for len(num) > 1 && num[0] == '0' && num[1] != '.' {
			num = num[1:] // a JSON number has no leading zeros
		}
		return num
	}
	return nil
}

// openAIError is {"error":{"message":msg,"type":typ,"param":null,"code":code}}
// with msg a raw JSON string.
func openAIError(msg []byte, typ string, code []byte) []byte {
	b := []byte(`{"error":{"message":`)
	b = append(b, msg...)
	b = append(b, `,"type":`...)
	b = rawjson.AppendString(b, typ)
	b = append(b, `,"param":null,"code":`...)
	if len(code) == 0 {
		b = append(b, "null"...)
	} else {
		b = rawjson.AppendString(b, code)
	}
	return append(b, "}}"...)
}

// errorType maps a google.rpc status to OpenAI's error types.
func errorType(status string, httpStatus int) string {
	switch status {
	case "INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE", "NOT_FOUND":
		return "invalid_request_error"
	case "UNAUTHENTICATED":
		return "authentication_error"
	case "PERMISSION_DENIED":
		return "permission_error"
	case "RESOURCE_EXHAUSTED":
		return "rate_limit_error"
	case "UNAVAILABLE":
		return "overloaded_error"
	case "DEADLINE_EXCEEDED":
		return "timeout_error"
	}
	if httpStatus >= 400 && httpStatus < 500 {
		return "invalid_request_error"
	}
	return "api_error"
}

func init() { sdk.Register(plugin{}) }

func main() {}
