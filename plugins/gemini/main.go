// Command gemini is the LLM Proxy provider plugin for Google's Gemini API
// (generateContent, streamGenerateContent, embedContent): OpenAI chat and
// embeddings requests are translated into Gemini's, and answers and event
// streams back into OpenAI's shapes.
//
// It reads JSON through the host-built tape (Stream.ParseJSON) and copies
// values it does not change as raw bytes. What is mapped, and what is not,
// is listed in request.go, response.go and stream.go, and in the README's
// section on this plugin.
//
// The plugin follows ABI 2's callback model: each operation starts in a
// Plugin method, which translates the request and dispatches it with
// Stream.Send (after Stream.FetchImages when it names images by URL), and
// the answer is translated in the Handler's functions as it arrives. An
// instance serves many streams at once, interleaved, so what a stream needs
// from one callback to the next lives in a value of its own (a completion,
// a streamer, an embedding), never in the package's buffers, which are
// scratch for the callback that uses them.
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
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/chatreq"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

type plugin struct{ sdk.Unimplemented }

var jsonHeaders = [][2]string{{"Content-Type", "application/json"}}

// The request's Doc and the responses' tape, scratch reused by the
// callbacks of a warm instance: neither outlives the callback that parses
// into it. The request's whole Doc is kept, not only its tape: the compiler
// cannot tell that the values chatreq reads from it do not outlive the
// call, so a Doc local to chat would be moved to the heap, an allocation
// per request.
var (
	reqDoc   rawjson.Doc
	respTape []uint32
)

func (plugin) Chat(s *sdk.Stream) error { return chat(s) }

func (plugin) ChatStream(s *sdk.Stream) error { return chat(s) }

// imageURLs collects the http(s) image URLs of a request (collectURL); it
// is scratch of the callback that builds the request.
var imageURLs []string

// collectURL is the fetcher of a request's first translation: it notes the
// URL and answers with nothing, so the request can be translated again
// once the host has downloaded the images (chatWithImages).
func collectURL(url string) (string, []byte, error) {
	imageURLs = append(imageURLs, url)
	return "", nil, nil
}

// chat starts a chat or chat_stream: it translates the request and sends
// it. A request that names images by http(s) URL is translated twice: once
// to find the URLs, then, after the host downloaded them all at once
// (Stream.FetchImages), with the images inline. The errors are the ones a
// translation with each image fetched in turn would give: the first pass
// stops where such a translation would, so it finds exactly the images it
// would have fetched, and the second pass reports the first error in the
// request's order, a refused image included.
func chat(s *sdk.Stream) error {
	cfg, err := s.Config()
	if err != nil {
		return err
	}
	req, err := parseChat(s)
	if err != nil {
		return err
	}
	imageURLs = imageURLs[:0]
	body, err := buildRequest(req, s.ParseJSON, collectURL)
	if len(imageURLs) > 0 {
		return s.FetchImages(imageURLs, chatWithImages)
	}
	if err != nil {
		return err
	}
	return sendChat(s, cfg, req, body)
}

// chatWithImages translates the request again with the downloaded images
// and sends it.
func chatWithImages(s *sdk.Stream, imgs *sdk.Images) error {
	cfg, err := s.Config()
	if err != nil {
		return err
	}
	req, err := parseChat(s)
	if err != nil {
		return err
	}
	body, err := buildRequest(req, s.ParseJSON, imgs.Get)
	if err != nil {
		return err
	}
	return sendChat(s, cfg, req, body)
}

// parseChat parses the stream's request into reqDoc and checks its model.
func parseChat(s *sdk.Stream) (rawjson.Value, error) {
	var err error
	reqDoc, err = s.ParseJSON(s.Request(), reqDoc.Tape)
	if err != nil {
		return rawjson.Value{}, chatreq.BadRequest("", "the request body is not valid JSON")
	}
	req := reqDoc.Root()
	model, ok := req.Get("model").Str()
	if !ok || len(model) == 0 {
		return rawjson.Value{}, chatreq.BadRequest("model", "model must be a string")
	}
	if err := checkModel(model); err != nil {
		return rawjson.Value{}, err
	}
	return req, nil
}

// checkModel refuses a model name that could not stand for itself in the
// upstream URL's path (the host refuses those too).
func checkModel(model []byte) error {
	if !abi.ValidModel(string(model)) {
		return chatreq.BadRequest("model", "the model name may hold only "+abi.ModelNameRule)
	}
	return nil
}

// sendChat sends the translated request; the answer goes to a completion
// or, for a chat_stream, to a streamer, each keeping the request's model
// (a copy: the request's Doc is gone by then).
func sendChat(s *sdk.Stream, cfg *sdk.Config, req rawjson.Value, body []byte) error {
	model, _ := req.Get("model").Str()
	if s.Op() == abi.OpChatStream {
		t := newStreamer(req.Get("model").Raw())
		return s.Send(sdk.Request{Method: "POST", URL: modelURL(cfg.BaseURL, model, ":streamGenerateContent?alt=sse"), Header: jsonHeaders, Body: body},
			sdk.Handler{Head: t.responseHead, Event: t.event, End: t.end, Error: failUpstream})
	}
	c := &completion{reqModel: append([]byte(nil), req.Get("model").Raw()...)}
	return s.Send(sdk.Request{Method: "POST", URL: modelURL(cfg.BaseURL, model, ":generateContent"), Header: jsonHeaders, Body: body},
		sdk.Handler{Body: c.body, Error: failUpstream})
}

// completion is a chat's state: the request's model, for an answer that
// does not name its own.
type completion struct{ reqModel []byte }

// body translates a whole GenerateContentResponse.
func (c *completion) body(s *sdk.Stream, r *sdk.Response, body []byte) error {
	rd, err := s.ParseJSON(body, respTape)
	respTape = rd.Tape
	if errors.Is(err, rawjson.ErrSyntax) {
		return errUpstreamBody
	}
	if err != nil {
		return err
	}
	out, err := buildCompletion(rd.Root(), chatreq.Created(r), c.reqModel)
	if err != nil {
		return err
	}
	return s.EmitBody(out)
}

// modelURL is base/models/{model}{method}. A model given with its own
// collection ("tunedModels/x") keeps it. The model has passed checkModel:
// each of its characters stands for itself in a URL path.
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
func (plugin) Models(s *sdk.Stream) error {
	cfg, err := s.Config()
	if err != nil {
		return err
	}
	return s.Send(sdk.Request{Method: "GET", URL: cfg.BaseURL + "/models?pageSize=1000"},
		sdk.Handler{Body: modelList, Error: failUpstream})
}

// modelList translates the answer of GET /models.
func modelList(s *sdk.Stream, _ *sdk.Response, body []byte) error {
	doc, err := s.ParseJSON(body, respTape)
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
	return s.EmitBody(append(b, "]}"...))
}

// errUpstreamBody reports an upstream answer that is not what the API
// documents.
var errUpstreamBody = &sdk.HTTPError{Status: 502, Message: "the upstream answered with a body that is not a Gemini API response"}

// maxErrorBody is how much of an upstream error body is read and passed on.
const maxErrorBody = 64 << 10

// failUpstream is the Handler.Error of every upstream request: it passes an
// upstream error on, rewritten into OpenAI's shape. Google's errors are
// {"error":{"code":429,"message":...,"status":"RESOURCE_EXHAUSTED",
// "details":[...]}}: the message is kept, the status becomes the code and
// picks the type. The HTTP status is kept; the host maps it (401/403 to 502
// upstream_auth_failed, 5xx to 502 but 503/504).
func failUpstream(s *sdk.Stream, resp *sdk.Response, body []byte) error {
	if len(body) > maxErrorBody {
		body = body[:maxErrorBody]
	}
	doc, err := s.ParseJSON(body, respTape)
	respTape = doc.Tape
	if err == nil {
		e := doc.Root().Get("error")
		if msg := e.Get("message"); msg.Kind() == rawjson.String {
			status, _ := e.Get("status").Str()
			out := openAIError(msg.Raw(), errorType(string(status), resp.StatusCode), status)
			if wait := retryDelay(e.Get("details")); wait != nil {
				// The host turns retry_after into the client's Retry-After
				// (sdk/ABI.md §7.4): Google names the wait only here.
				out = append(append(append(out[:len(out)-1], `,"retry_after":`...), wait...), '}')
			}
			return s.Fail(resp.StatusCode, out)
		}
	}
	if len(body) == 0 {
		body = []byte("upstream returned HTTP " + strconv.Itoa(resp.StatusCode))
	}
	return s.Fail(resp.StatusCode, body)
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
