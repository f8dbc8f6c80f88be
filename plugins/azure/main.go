// Command azure is the LLM Proxy provider plugin for Azure OpenAI: the
// OpenAI wire format at Azure's deployment URLs.
//
// A request for model M goes to
//
//	{base_url}/openai/deployments/{deployment}/chat/completions?api-version={api_version}
//
// where the deployment is options.deployments[M], or M itself when the map
// has no entry, and the host adds the key as the api-key header. The body
// and the answers pass through unchanged, as with the openai plugin, except
// that the chunk Azure sends before a stream's first choice, which carries
// only prompt_filter_results, is not forwarded (no OpenAI stream has one).
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
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// maxBody bounds a non-streamed upstream body that the plugin buffers; the
// host enforces its own, configurable limit as well.
const maxBody = 64 << 20

const defaultAPIVersion = "2024-10-21"

type plugin struct{}

type settings struct {
	deployments map[string]string
	query       string // "?api-version=...", "" for the v1 API
	v1          bool
}

var settingsCache = map[*sdk.Config]*settings{}

func settingsFor(cfg *sdk.Config) *settings {
	if s, ok := settingsCache[cfg]; ok {
		return s
	}
	s := &settings{}
	cfg.Option("deployments", &s.deployments)
	v := defaultAPIVersion
	var o string
	if cfg.Option("api_version", &o) && o != "" {
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

func (plugin) Chat(c *sdk.Call) error       { return forward(c, "chat/completions", false) }
func (plugin) ChatStream(c *sdk.Call) error { return forward(c, "chat/completions", true) }
func (plugin) Embeddings(c *sdk.Call) error { return forward(c, "embeddings", false) }

func forward(c *sdk.Call, op string, stream bool) error {
	cfg, err := c.Config()
	if err != nil {
		return err
	}
	req := c.Request()
	model, start, end, ok := modelOf(c, req)
	if !ok {
		return &sdk.HTTPError{Status: 400, Message: "model must be a string"}
	}
	s := settingsFor(cfg)
	if d := s.deployment(model); s.v1 && d != model {
		// The v1 API finds the deployment through the body's model.
		body := append(make([]byte, 0, len(req)+len(d)), req[:start]...)
		body = rawjson.AppendString(body, d)
		req = append(body, req[end:]...)
	}
	h := jsonHeaders
	if stream {
		h = streamHeaders
	}
	resp, err := c.Send("POST", operationURL(cfg, s, model, op), h, req)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return c.FailUpstream(resp)
	}
	if stream {
		started := false
		return c.ForwardSSE(resp, func(data []byte) []byte {
			if !started {
				if promptFilterOnly(data) {
					return nil
				}
				started = true
			}
			return data
		})
	}
	body, err := resp.ReadAll(maxBody)
	if err != nil {
		return err
	}
	return c.EmitBody(body)
}

// promptFilterOnly reports Azure's leading chunk that holds no choice and
// no usage, only the prompt's content filter results.
func promptFilterOnly(data []byte) bool {
	return bytes.Contains(data, []byte(`"prompt_filter_results"`)) && bytes.Contains(data, []byte(`"choices":[]`)) &&
		!bytes.Contains(data, []byte(`"usage":{`))
}

// reqTape is reused across the calls of a warm instance.
var reqTape []uint32

// modelOf returns the request's top-level "model" (the upstream name the
// host wrote there) and where its literal starts and ends in req, found
// through the host-built tape, so a "model" key nested elsewhere in the
// request cannot be mistaken for it.
func modelOf(c *sdk.Call, req []byte) (model string, start, end int, ok bool) {
	doc, err := c.ParseJSON(req, reqTape)
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
// /openai/v1/models), an
// OpenAI-shaped list; the proxy's provider connection test uses it.
func (plugin) Models(c *sdk.Call) error {
	cfg, err := c.Config()
	if err != nil {
		return err
	}
	resp, err := c.Send("GET", modelsURL(cfg, settingsFor(cfg)), jsonHeaders[1:], nil)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return c.FailUpstream(resp)
	}
	body, err := resp.ReadAll(maxBody)
	if err != nil {
		return err
	}
	return c.EmitBody(body)
}

func init() { sdk.Register(plugin{}) }

func main() {}
