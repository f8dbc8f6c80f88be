// Command azure is the LLM Proxy provider plugin for Azure OpenAI: the
// OpenAI wire format at Azure's deployment URLs.
//
// A request for model M goes to
//
//	{base_url}/openai/deployments/{deployment}/chat/completions?api-version={api_version}
//
// where the deployment is options.deployments[M], or M itself when the map
// has no entry, and the host adds the key as the api-key header. The body
// and the answers pass through unchanged, as with the openai plugin: the
// host relays a whole answer without the plugin reading it, and an error
// answer is passed on with its status and body. A stream differs: the chunk
// Azure sends before a stream's first choice, which carries only
// prompt_filter_results, is not forwarded (no OpenAI stream has one), so
// the plugin is called for each event of a stream and emits the others
// unchanged.
//
// With api_version = "v1" the plugin speaks Azure's v1 API instead:
//
//	{base_url}/openai/v1/chat/completions
//
// with no api-version, and the deployment named by the body's "model",
// which the plugin rewrites to the deployment when the table maps it.
//
// Provider options:
//
//	deployments   a table of model name = deployment name
//	api_version   the api-version query parameter (default 2024-10-21, the
//	              data plane's latest GA version), or "v1" for the v1 API
package main

import (
	"bytes"
	"net/url"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

const defaultAPIVersion = "2024-10-21"

type plugin struct{}

type settings struct {
	deployments map[string]string
	query       string // "?api-version=...", "" for the v1 API
	v1          bool
}

// settingsCache holds the decoded options of recent providers, keyed by the
// SDK's shared *sdk.Config: it is derived from the config alone, so the
// streams of a provider share it.
var settingsCache = map[*sdk.Config]*settings{}

func settingsFor(cfg *sdk.Config) *settings {
	if s, ok := settingsCache[cfg]; ok {
		return s
	}
	s := &settings{deployments: map[string]string{}}
	for m := cfg.Option("deployments").Members(); m.Next(); {
		k, _ := rawjson.Unquote(append(append([]byte{'"'}, m.Key()...), '"'))
		if d, ok := m.Value().Str(); ok {
			s.deployments[k] = string(d)
		}
	}
	v := defaultAPIVersion
	if o, ok := cfg.OptionString("api_version"); ok && o != "" {
		v = o
	}
	if v == "v1" {
		s.v1 = true
	} else {
		s.query = "?api-version=" + url.QueryEscape(v)
	}
	if len(settingsCache) > 32 {
		clear(settingsCache)
	}
	settingsCache[cfg] = s
	return s
}

// deployment is the model's deployment name.
func (s *settings) deployment(model string) string {
	if d, ok := s.deployments[model]; ok {
		return d
	}
	return model
}

// operationURL is the URL of an operation for the model: its deployment's,
// or the v1 API's, which takes the deployment from the body.
func operationURL(cfg *sdk.Config, s *settings, model, op string) string {
	if s.v1 {
		return cfg.BaseURL + "/openai/v1/" + op
	}
	return cfg.BaseURL + "/openai/deployments/" + url.PathEscape(s.deployment(model)) + "/" + op + s.query
}

// modelsURL lists the resource's models.
func modelsURL(cfg *sdk.Config, s *settings) string {
	if s.v1 {
		return cfg.BaseURL + "/openai/v1/models"
	}
	return cfg.BaseURL + "/openai/models" + s.query
}

var (
	jsonHeaders   = [][2]string{{"Content-Type", "application/json"}, {"Accept", "application/json"}}
	streamHeaders = [][2]string{{"Content-Type", "application/json"}, {"Accept", "text/event-stream"}}
)

func (plugin) Chat(s *sdk.Stream) error       { return forward(s, "chat/completions", false) }
func (plugin) ChatStream(s *sdk.Stream) error { return forward(s, "chat/completions", true) }
func (plugin) Embeddings(s *sdk.Stream) error { return forward(s, "embeddings", false) }

// forward sends the request to the operation's URL. A whole answer, and
// an error answer, go to the client as they are (the host relays the
// former; the SDK's default error path passes on the latter's status and
// body). A stream is read event by event, only to drop Azure's prompt
// filter chunk.
func forward(s *sdk.Stream, op string, stream bool) error {
	cfg, err := s.Config()
	if err != nil {
		return err
	}
	req := s.Request()
	model, start, end, ok := modelOf(s, req)
	if !ok {
		return &sdk.HTTPError{Status: 400, Message: "model must be a string"}
	}
	set := settingsFor(cfg)
	if !abi.ValidModel(set.deployment(model)) {
		// The deployment goes into the URL's path (escaped, but ".." would
		// still climb out of it).
		return &sdk.HTTPError{Status: 400, Message: "the model's deployment name may hold only " + abi.ModelNameRule}
	}
	if d := set.deployment(model); set.v1 && d != model {
		// The v1 API finds the deployment through the body's model.
		body := append(make([]byte, 0, len(req)+len(d)), req[:start]...)
		body = rawjson.AppendString(body, d)
		req = append(body, req[end:]...)
	}
	h, handler := jsonHeaders, sdk.Relay
	if stream {
		h, handler = streamHeaders, sdk.Handler{Event: new(filter).event}
	}
	return s.Send(sdk.Request{Method: "POST", URL: operationURL(cfg, set, model, op), Header: h, Body: req}, handler)
}

// filter is one stream's state: whether its first chunk with a choice (or
// anything else that is not the prompt filter chunk) has been forwarded.
type filter struct{ started bool }

// event forwards an upstream event as a chunk, except a prompt filter
// chunk before the first forwarded one. The Handler's default End finishes
// the stream at [DONE] or at the end of the body.
func (f *filter) event(s *sdk.Stream, data []byte) error {
	if !f.started {
		if promptFilterOnly(data) {
			return nil
		}
		f.started = true
	}
	return s.EmitChunk(data)
}

// promptFilterOnly reports Azure's leading chunk that holds no choice and
// no usage, only the prompt's content filter results.
func promptFilterOnly(data []byte) bool {
	return bytes.Contains(data, []byte(`"prompt_filter_results"`)) && bytes.Contains(data, []byte(`"choices":[]`)) &&
		!bytes.Contains(data, []byte(`"usage":{`))
}

// reqTape is scratch for modelOf, reused from callback to callback of a
// warm instance; nothing in it outlives the callback that filled it.
var reqTape []uint32

// modelOf returns the request's top-level "model" (the upstream name the
// host wrote there) and where its literal starts and ends in req, found
// through the host-built tape, so a "model" key nested elsewhere in the
// request cannot be mistaken for it.
func modelOf(s *sdk.Stream, req []byte) (model string, start, end int, ok bool) {
	doc, err := s.ParseJSON(req, reqTape)
	reqTape = doc.Tape
	if err != nil {
		return "", 0, 0, false
	}
	v := doc.Root().Get("model")
	m, ok := v.Str()
	if !ok || len(m) == 0 {
		return "", 0, 0, false
	}
	raw := v.Raw() // a sub-slice of req: its capacity tells where it starts
	start = cap(req) - cap(raw)
	return string(m), start, start + len(raw), true
}

// Models lists the models of the resource (GET /openai/models, or
// /openai/v1/models), an OpenAI-shaped list that the host relays; the
// proxy's provider connection test uses it.
func (plugin) Models(s *sdk.Stream) error {
	cfg, err := s.Config()
	if err != nil {
		return err
	}
	return s.Send(sdk.Request{Method: "GET", URL: modelsURL(cfg, settingsFor(cfg)), Header: jsonHeaders[1:]}, sdk.Relay)
}

func init() { sdk.Register(plugin{}) }

func main() {}
