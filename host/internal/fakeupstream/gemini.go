package fakeupstream

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// The same Server also speaks Google's Gemini API under /v1beta, so the
// gemini plugin can be tested end to end:
//
//   - POST /v1beta/models/{model}:generateContent, and
//     :streamGenerateContent?alt=sse (one GenerateContentResponse per event,
//     running usage in each, no [DONE]);
//   - POST /v1beta/models/{model}:batchEmbedContents (the Embedding values);
//   - GET /v1beta/models.
//
// Requests must carry "x-goog-api-key: <APIKey>" when Options.APIKey is set
// (a missing key is 403, a wrong one 400, as Google answers). The fake
// refuses what the real API refuses where a translation could go wrong:
// unknown top-level fields, roles other than user and model, parts that
// are not exactly one of text, inlineData, functionCall and
// functionResponse, inline data that is not base64, schema keywords outside
// Gemini's subset (additionalProperties, $schema, $ref), function responses
// that do not answer the previous turn's calls one for one, and a replayed
// function call without the thought signature it was given. It answers
// like the other sides: "echo: <last user text>" with images described, a
// function call (args {"city":"Paris"}, a thought signature) when tools
// are given and the mode is not NONE, "tool said: <responses>" after
// function responses. ModelBlocked is a blocked prompt; the Model* failure
// names answer with Google's error shape.

// ModelBlocked answers a Gemini request with no candidates and
// promptFeedback.blockReason SAFETY.
const ModelBlocked = "blocked-prompt"

type geminiRequest struct {
	Contents          []geminiContent `json:"contents"`
	SystemInstruction *geminiContent  `json:"systemInstruction"`
	Tools             []struct {
		FunctionDeclarations []struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
		} `json:"functionDeclarations"`
	} `json:"tools"`
	ToolConfig *struct {
		FunctionCallingConfig struct {
			Mode                 string   `json:"mode"`
			AllowedFunctionNames []string `json:"allowedFunctionNames"`
		} `json:"functionCallingConfig"`
	} `json:"toolConfig"`
	GenerationConfig json.RawMessage `json:"generationConfig"`
	SafetySettings   json.RawMessage `json:"safetySettings"`
	CachedContent    string          `json:"cachedContent"`
}

type geminiContent struct {
	Role  string       `json:"role"`
	Parts []geminiPart `json:"parts"`
}

type geminiPart struct {
	Text       *string `json:"text"`
	Thought    bool    `json:"thought"`
	InlineData *struct {
		MimeType string `json:"mimeType"`
		Data     string `json:"data"`
	} `json:"inlineData"`
	FunctionCall *struct {
		Name string          `json:"name"`
		Args json.RawMessage `json:"args"`
	} `json:"functionCall"`
	FunctionResponse *struct {
		Name     string          `json:"name"`
		Response json.RawMessage `json:"response"`
	} `json:"functionResponse"`
	ThoughtSignature string `json:"thoughtSignature"`
}

// geminiError sends {"error":{"code":...,"message":...,"status":...}}.
func geminiError(w http.ResponseWriter, code int, status, message string) {
	b := []byte(`{"error":{"code":`)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, message)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, status)
	b = append(b, "}}"...)
	writeJSON(w, code, b, "")
}

// geminiSignature is the thought signature the fake gives its function
// calls and wants back.
const geminiSignature = "ZmFrZS1zaWduYXR1cmU="

// serveGemini answers the /v1beta paths; it reports whether the request
// was one.
func (s *Server) serveGemini(w http.ResponseWriter, r *http.Request, body []byte) bool {
	if !strings.HasPrefix(r.URL.Path, "/v1beta/") {
		return false
	}
	switch key := r.Header.Get("x-goog-api-key"); {
	case s.opts.APIKey != "" && key == "":
		geminiError(w, http.StatusForbidden, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.")
		return true
	case s.opts.APIKey != "" && key != s.opts.APIKey:
		geminiError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
		return true
	}
	path := r.URL.Path
	if path == "/v1beta/models" && r.Method == http.MethodGet {
		writeJSON(w, http.StatusOK, []byte(`{"models":[{"name":"models/gemini-fake-1","displayName":"Gemini Fake","supportedGenerationMethods":["generateContent","countTokens"]}]}`), "")
		return true
	}
	model, method, ok := strings.Cut(strings.TrimPrefix(path, "/v1beta/models/"), ":")
	if !ok || r.Method != http.MethodPost {
		geminiError(w, http.StatusNotFound, "NOT_FOUND", "no such method "+path)
		return true
	}
	switch model {
	case ModelFail400:
		geminiError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "The fake upstream rejects this model on purpose.")
	case ModelFail401:
		geminiError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
	case ModelFail429:
		// Google names the wait in a RetryInfo detail, not in a
		// Retry-After header.
		writeJSON(w, http.StatusTooManyRequests, []byte(`{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"6.2s"}]}}`), "")
	case ModelFail500:
		geminiError(w, http.StatusInternalServerError, "INTERNAL", "An internal error has occurred.")
	case ModelFail503:
		geminiError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "The model is overloaded. Please try again later.")
	default:
		switch method {
		case "generateContent":
			s.handleGenerate(w, r, model, body, false)
		case "streamGenerateContent":
			s.handleGenerate(w, r, model, body, r.URL.Query().Get("alt") == "sse")
		case "batchEmbedContents":
			s.handleGeminiEmbed(w, body)
		default:
			geminiError(w, http.StatusNotFound, "NOT_FOUND", "no such method "+method)
		}
	}
	return true
}

// unsupportedSchemaKey finds a keyword Gemini's Schema does not have.
func unsupportedSchemaKey(raw json.RawMessage) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	var walk func(any) string
	walk = func(v any) string {
		switch t := v.(type) {
		case map[string]any:
			for k, sub := range t {
				switch k {
				case "additionalProperties", "$schema", "$ref", "$defs", "oneOf", "allOf", "const":
					return k
				}
				if k == "properties" {
					if props, ok := sub.(map[string]any); ok {
						for _, p := range props {
							if bad := walk(p); bad != "" {
								return bad
							}
						}
					}
					continue
				}
				if bad := walk(sub); bad != "" {
					return bad
				}
			}
		case []any:
			for _, sub := range t {
				if bad := walk(sub); bad != "" {
					return bad
				}
			}
		}
		return ""
	}
	return walk(v)
}

// checkGemini returns why the real API would refuse req, or "".
func checkGemini(req *geminiRequest) string {
	if len(req.Contents) == 0 {
		return "* GenerateContentRequest.contents: contents is not specified"
	}
	for _, t := range req.Tools {
		for _, f := range t.FunctionDeclarations {
			if bad := unsupportedSchemaKey(f.Parameters); bad != "" {
				return `Invalid JSON payload received. Unknown name "` + bad + `" at 'tools[0].function_declarations[0].parameters': Cannot find field.`
			}
		}
	}
	if req.GenerationConfig != nil {
		var gc struct {
			ResponseSchema json.RawMessage `json:"responseSchema"`
		}
		json.Unmarshal(req.GenerationConfig, &gc)
		if bad := unsupportedSchemaKey(gc.ResponseSchema); bad != "" {
			return `Invalid JSON payload received. Unknown name "` + bad + `" at 'generation_config.response_schema': Cannot find field.`
		}
	}
	prevCalls := 0
	for i, c := range req.Contents {
		if c.Role != "user" && c.Role != "model" {
			return "Please use a valid role: user, model."
		}
		calls, responses := 0, 0
		for _, p := range c.Parts {
			kinds := 0
			for _, set := range []bool{p.Text != nil, p.InlineData != nil, p.FunctionCall != nil, p.FunctionResponse != nil} {
				if set {
					kinds++
				}
			}
			if kinds != 1 {
				return "contents[" + strconv.Itoa(i) + "]: a part must hold exactly one of text, inlineData, functionCall, functionResponse"
			}
			switch {
			case p.InlineData != nil:
				if _, err := base64.StdEncoding.DecodeString(p.InlineData.Data); err != nil || p.InlineData.MimeType == "" {
					return "Invalid value at 'contents[" + strconv.Itoa(i) + "].parts': inline data must be base64 with a mime type"
				}
			case p.FunctionCall != nil:
				calls++
				if c.Role != "model" || !bytes.HasPrefix(bytes.TrimSpace(p.FunctionCall.Args), []byte("{")) {
					return "function calls must be model parts with an object of args"
				}
				if calls == 1 && p.ThoughtSignature != geminiSignature && p.ThoughtSignature != "skip_thought_signature_validator" {
					return "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly."
				}
			case p.FunctionResponse != nil:
				responses++
				if !bytes.HasPrefix(bytes.TrimSpace(p.FunctionResponse.Response), []byte("{")) {
					return "function responses must hold an object"
				}
			}
		}
		if responses > 0 && responses != prevCalls {
			return "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn."
		}
		prevCalls = calls
	}
	return ""
}

func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request, model string, body []byte, sse bool) {
	var req geminiRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		geminiError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid JSON payload received. "+err.Error())
		return
	}
	if msg := checkGemini(&req); msg != "" {
		geminiError(w, http.StatusBadRequest, "INVALID_ARGUMENT", msg)
		return
	}
	n := s.seq.Add(1)
	rid := "resp-fake" + strconv.FormatUint(n, 10)
	if model == ModelBlocked {
		b := []byte(`{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":1,"totalTokenCount":1},"modelVersion":`)
		b = appendJSONString(b, model)
		b = append(b, `,"responseId":"`+rid+`"}`...)
		if sse {
			s.geminiEvents(w, r, [][]byte{b})
			return
		}
		writeJSON(w, http.StatusOK, b, rid)
		return
	}
	a := geminiAnswer(&req)
	head := func(b []byte) []byte { return append(b, `{"candidates":[{"content":{"role":"model","parts":[`...) }
	tail := func(b []byte, finish string, completion int) []byte {
		b = append(b, `]},`...)
		if finish != "" {
			b = append(b, `"finishReason":"`+finish+`",`...)
		}
		b = append(b, `"index":0}],"usageMetadata":{"promptTokenCount":`...)
		b = strconv.AppendInt(b, int64(a.promptTokens), 10)
		b = append(b, `,"candidatesTokenCount":`...)
		b = strconv.AppendInt(b, int64(completion), 10)
		b = append(b, `,"totalTokenCount":`...)
		b = strconv.AppendInt(b, int64(a.promptTokens+completion), 10)
		b = append(b, `},"modelVersion":`...)
		b = appendJSONString(b, model)
		return append(b, `,"responseId":"`+rid+`"}`...)
	}
	call := func(b []byte) []byte {
		b = append(b, `{"functionCall":{"name":`...)
		b = appendJSONString(b, a.toolName)
		return append(b, `,"args":`+toolArguments+`},"thoughtSignature":"`+geminiSignature+`"}`...)
	}
	if !sse {
		b := head(nil)
		if a.toolName != "" {
			b = call(b)
		} else {
			b = append(b, `{"text":`...)
			b = appendJSONString(b, a.text)
			b = append(b, '}')
		}
		writeJSON(w, http.StatusOK, tail(b, "STOP", a.completionTokens), rid)
		return
	}
	var events [][]byte
	if a.toolName != "" {
		events = append(events, tail(call(head(nil)), "STOP", a.completionTokens))
	} else {
		parts := splitText(a.text, s.chunks)
		done := 0
		for i, part := range parts {
			if i == 2 && model == ModelStreamErrorEvent {
				events = append(events, []byte(`{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}`))
				break
			}
			done += countWords(part)
			b := head(nil)
			b = append(b, `{"text":`...)
			b = appendJSONString(b, part)
			b = append(b, '}')
			finish := ""
			if i == len(parts)-1 {
				finish, done = "STOP", a.completionTokens
			}
			events = append(events, tail(b, finish, done))
		}
	}
	s.geminiEvents(w, r, events)
}

// geminiEvents writes events as data-only server-sent events, no [DONE].
func (s *Server) geminiEvents(w http.ResponseWriter, r *http.Request, events [][]byte) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	c := &chunkStream{w: w, rc: http.NewResponseController(w), ctx: r.Context(), delay: s.opts.ChunkDelay}
	defer c.stop()
	for _, ev := range events {
		if !c.send(append(append([]byte("data: "), ev...), "\n\n"...)) {
			s.clientGone()
			return
		}
	}
}

// geminiAnswer decides the reply to a checked request.
func geminiAnswer(req *geminiRequest) chatAnswer {
	var a chatAnswer
	last := req.Contents[len(req.Contents)-1]
	for _, c := range req.Contents {
		for _, p := range c.Parts {
			if p.Text != nil {
				a.promptTokens += countWords(*p.Text)
			}
		}
	}
	a.promptTokens = max(a.promptTokens, 1)
	var results, text []string
	for _, p := range last.Parts {
		switch {
		case p.FunctionResponse != nil:
			results = append(results, string(p.FunctionResponse.Response))
		case p.Text != nil:
			text = append(text, *p.Text)
		case p.InlineData != nil:
			data, _ := base64.StdEncoding.DecodeString(p.InlineData.Data)
			text = append(text, "["+p.InlineData.MimeType+" "+strconv.Itoa(len(data))+" bytes]")
		}
	}
	mode := ""
	if req.ToolConfig != nil {
		mode = req.ToolConfig.FunctionCallingConfig.Mode
	}
	switch {
	case len(results) > 0:
		a.text = "tool said: " + strings.Join(results, "; ")
	case len(req.Tools) > 0 && len(req.Tools[0].FunctionDeclarations) > 0 && mode != "NONE":
		a.toolName = req.Tools[0].FunctionDeclarations[0].Name
		if req.ToolConfig != nil && len(req.ToolConfig.FunctionCallingConfig.AllowedFunctionNames) > 0 {
			a.toolName = req.ToolConfig.FunctionCallingConfig.AllowedFunctionNames[0]
		}
		a.completionTokens = countWords(a.toolName) + countWords(toolArguments)
		return a
	default:
		a.text = "echo: " + strings.Join(text, " ")
	}
	a.completionTokens = countWords(a.text)
	return a
}

func (s *Server) handleGeminiEmbed(w http.ResponseWriter, body []byte) {
	var req struct {
		Requests []struct {
			Model   string        `json:"model"`
			Content geminiContent `json:"content"`
			Dims    int           `json:"outputDimensionality"`
		} `json:"requests"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || len(req.Requests) == 0 {
		geminiError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid JSON payload received.")
		return
	}
	b := []byte(`{"embeddings":[`)
	for i, e := range req.Requests {
		if !strings.HasPrefix(e.Model, "models/") || len(e.Content.Parts) != 1 || e.Content.Parts[0].Text == nil {
			geminiError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "each request needs models/{model} and one text part")
			return
		}
		dims := e.Dims
		if dims <= 0 {
			dims = DefaultEmbeddingDimensions
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"values":[`...)
		for j, v := range Embedding(*e.Content.Parts[0].Text, dims) {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendFloat(b, float64(v), 'g', -1, 32)
		}
		b = append(b, "]}"...)
	}
	writeJSON(w, http.StatusOK, append(b, "]}"...), "")
}
