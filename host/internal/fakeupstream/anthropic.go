package fakeupstream

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// The same Server also speaks Anthropic's Messages API, so the anthropic
// plugin can be tested end to end:
//
//   - POST /v1/messages, plain and streamed (named server-sent events:
//     message_start, ping, content_block_start/delta/stop, message_delta,
//     message_stop);
//   - GET /v1/models when the request carries an anthropic-version header.
//
// Requests must carry "x-api-key: <APIKey>" (when Options.APIKey is set)
// and an anthropic-version header. The fake checks requests the way the
// real API does where a translation could go wrong: unknown top-level
// fields, a missing max_tokens, roles that do not alternate, empty text
// blocks, tool results that answer no tool call of the previous assistant
// message, and images whose base64 data does not decode. It answers
// deterministically, like the OpenAI side: "echo: <last user text>", with
// each image of the last user message described as [image <media type>
// <n> bytes] or [image url <url>]; a tool call of the first tool (or the
// named one) when tools are given and tool_choice is not none; "tool said:
// <results>" after tool results. The Model* failure names answer with
// Anthropic's error shape; ModelFail529 and ModelFail503 are overloads,
// and ModelStreamErrorEvent sends an error event in the middle of a stream.
//
// What only the Messages API carries is played too, so a passthrough can be
// told from a translation: with "thinking" enabled the answer begins with a
// thinking block signed FakeSignature (streamed as thinking_delta and
// signature_delta); a thinking block sent back must carry that signature;
// the web_search server tool makes the answer begin with server_tool_use
// and web_search_tool_result blocks; tools may carry a type and
// cache_control, blocks cache_control.

// More model names with special behaviour, for the Anthropic side.
const (
	// ModelFail401 answers 401 authentication_error.
	ModelFail401 = "fail-401"
	// ModelFail529 answers 529 overloaded_error.
	ModelFail529 = "fail-529"
	// ModelFail503 answers 503 with an overloaded_error body.
	ModelFail503 = "fail-503"
	// ModelStreamErrorEvent streams two text deltas, then an overloaded
	// error event, and ends the body.
	ModelStreamErrorEvent = "stream-error-event"
)

// FakeSignature signs the fake's thinking blocks.
const FakeSignature = "fake-thinking-signature"

// messagesRequest lists every top-level field the real API accepts that
// the fake knows; anything else is refused, as the real API does.
type messagesRequest struct {
	Model         string             `json:"model"`
	MaxTokens     *int               `json:"max_tokens"`
	System        json.RawMessage    `json:"system"`
	Messages      []anthropicMessage `json:"messages"`
	StopSequences []string           `json:"stop_sequences"`
	Temperature   *float64           `json:"temperature"`
	TopP          *float64           `json:"top_p"`
	TopK          *int               `json:"top_k"`
	Tools         []anthropicTool    `json:"tools"`
	ToolChoice    *struct {
		Type string `json:"type"`
		Name string `json:"name"`
	} `json:"tool_choice"`
	Metadata     json.RawMessage `json:"metadata"`
	OutputConfig json.RawMessage `json:"output_config"`
	Thinking     json.RawMessage `json:"thinking"`
	ServiceTier  string          `json:"service_tier"`
	Stream       bool            `json:"stream"`
}

type anthropicMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"` // a string or an array of blocks
}

type anthropicTool struct {
	Type         string          `json:"type"`
	CacheControl json.RawMessage `json:"cache_control"`
	MaxUses      *int            `json:"max_uses"`
	Name         string          `json:"name"`
	Description  string          `json:"description"`
	InputSchema  json.RawMessage `json:"input_schema"`
}

type anthropicBlock struct {
	Type   string `json:"type"`
	Text   string `json:"text"`
	Source *struct {
		Type      string `json:"type"`
		MediaType string `json:"media_type"`
		Data      string `json:"data"`
		URL       string `json:"url"`
	} `json:"source"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	Thinking  string          `json:"thinking"`
	Signature string          `json:"signature"`
	Data      string          `json:"data"`
}

// blocks decodes a message content: a string is one text block.
func blocks(raw json.RawMessage) ([]anthropicBlock, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, false
		}
		return []anthropicBlock{{Type: "text", Text: s}}, true
	}
	var bs []anthropicBlock
	return bs, json.Unmarshal(raw, &bs) == nil
}

// The arguments of every fake Anthropic tool call, and their two stream
// pieces.
const (
	anthropicToolInput  = `{"city":"Paris"}`
	anthropicToolInput1 = `{"city":"Pa`
	anthropicToolInput2 = `ris"}`
)

// anthropicError sends {"type":"error","error":{"type":...,"message":...}}.
func anthropicError(w http.ResponseWriter, status int, typ, message string) {
	b := []byte(`{"type":"error","error":{"type":`)
	b = appendJSONString(b, typ)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, message)
	b = append(b, `},"request_id":"req_fake"}`...)
	writeJSON(w, status, b, "")
}

// serveAnthropic answers the Anthropic paths; it reports whether the
// request was one.
func (s *Server) serveAnthropic(w http.ResponseWriter, r *http.Request, body []byte) bool {
	isModels := r.URL.Path == "/v1/models" && r.Method == http.MethodGet && r.Header.Get("anthropic-version") != ""
	if !isModels && !(r.URL.Path == "/v1/messages" && r.Method == http.MethodPost) {
		return false
	}
	switch key := r.Header.Get("x-api-key"); {
	case s.opts.APIKey != "" && key == "":
		anthropicError(w, http.StatusUnauthorized, "authentication_error", "x-api-key header is required")
		return true
	case s.opts.APIKey != "" && key != s.opts.APIKey:
		anthropicError(w, http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
		return true
	case r.Header.Get("anthropic-version") == "":
		anthropicError(w, http.StatusBadRequest, "invalid_request_error", "anthropic-version: header is required")
		return true
	}
	if isModels {
		writeJSON(w, http.StatusOK, []byte(`{"data":[{"type":"model","id":"claude-fake-1","display_name":"Claude Fake","created_at":"2025-01-01T00:00:00Z"}],"has_more":false,"first_id":"claude-fake-1","last_id":"claude-fake-1"}`), "")
		return true
	}
	s.handleMessages(w, r, body)
	return true
}

func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request, body []byte) {
	var req messagesRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		anthropicError(w, http.StatusBadRequest, "invalid_request_error", "invalid request body: "+err.Error())
		return
	}
	switch req.Model {
	case ModelFail400:
		anthropicError(w, http.StatusBadRequest, "invalid_request_error", "the fake upstream rejects this model on purpose")
		return
	case ModelFail401:
		anthropicError(w, http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
		return
	case ModelFail429:
		w.Header().Set("Retry-After", "7")
		anthropicError(w, http.StatusTooManyRequests, "rate_limit_error", "Number of requests has exceeded your rate limit")
		return
	case ModelFail500:
		anthropicError(w, http.StatusInternalServerError, "api_error", "Internal server error")
		return
	case ModelFail529:
		anthropicError(w, 529, "overloaded_error", "Overloaded")
		return
	case ModelFail503:
		anthropicError(w, http.StatusServiceUnavailable, "overloaded_error", "Overloaded")
		return
	}
	a, msg := s.answerMessages(&req)
	if msg != "" {
		anthropicError(w, http.StatusBadRequest, "invalid_request_error", msg)
		return
	}
	if req.Stream {
		s.streamMessages(w, r, &req, &a)
		return
	}
	n := s.seq.Add(1)
	b := []byte(`{"id":"msg_fake` + strconv.FormatUint(n, 10) + `","type":"message","role":"assistant","model":`)
	b = appendJSONString(b, req.Model)
	b = append(b, `,"content":[`...)
	stop := "end_turn"
	if a.thinking {
		b = append(b, `{"type":"thinking","thinking":"Let me think.","signature":"`+FakeSignature+`"},`...)
	}
	if a.webSearch != "" {
		b = append(b, `{"type":"server_tool_use","id":"srvtoolu_fake","name":"web_search","input":{"query":"search"}},`+
			`{"type":"web_search_tool_result","tool_use_id":"srvtoolu_fake","content":[{"type":"web_search_result","url":"https://example.com/","title":"Example","encrypted_content":"enc-fake","page_age":null}]},`...)
	}
	if a.toolName != "" {
		b = append(b, `{"type":"tool_use","id":`...)
		b = appendJSONString(b, a.toolCallID)
		b = append(b, `,"name":`...)
		b = appendJSONString(b, a.toolName)
		b = append(b, `,"input":`+anthropicToolInput+`}`...)
		stop = "tool_use"
	} else {
		b = append(b, `{"type":"text","text":`...)
		b = appendJSONString(b, a.text)
		b = append(b, '}')
	}
	b = append(b, `],"stop_reason":"`+stop+`","stop_sequence":null,"usage":`...)
	b = appendAnthropicUsage(b, a.promptTokens, a.completionTokens)
	b = append(b, '}')
	writeJSON(w, http.StatusOK, b, "req_fake"+strconv.FormatUint(n, 10))
}

func appendAnthropicUsage(b []byte, input, output int) []byte {
	b = append(b, `{"input_tokens":`...)
	b = strconv.AppendInt(b, int64(input), 10)
	b = append(b, `,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":`...)
	b = strconv.AppendInt(b, int64(output), 10)
	return append(b, '}')
}

// answerMessages checks the conversation and decides the reply; a
// non-empty msg is the reason for a 400.
func (s *Server) answerMessages(req *messagesRequest) (a chatAnswer, msg string) {
	if req.MaxTokens == nil {
		return a, "max_tokens: Field required"
	}
	if len(req.Messages) == 0 {
		return a, "messages: at least one message is required"
	}
	var last []anthropicBlock
	var prevToolUses map[string]bool
	for i, m := range req.Messages {
		if m.Role != "user" && m.Role != "assistant" {
			return a, "messages." + strconv.Itoa(i) + ".role: Input should be 'user' or 'assistant'"
		}
		if i > 0 && m.Role == req.Messages[i-1].Role {
			return a, "messages: roles must alternate between \"user\" and \"assistant\""
		}
		bs, ok := blocks(m.Content)
		if !ok || len(bs) == 0 {
			return a, "messages." + strconv.Itoa(i) + ".content: a non-empty string or array of blocks is required"
		}
		toolUses := map[string]bool{}
		for _, b := range bs {
			switch b.Type {
			case "text":
				if strings.TrimSpace(b.Text) == "" {
					return a, "messages: text content blocks must contain non-whitespace text"
				}
				a.promptTokens += countWords(b.Text)
			case "image":
				if b.Source == nil {
					return a, "messages: image blocks need a source"
				}
				switch b.Source.Type {
				case "base64":
					if _, err := base64.StdEncoding.DecodeString(b.Source.Data); err != nil || !strings.HasPrefix(b.Source.MediaType, "image/") {
						return a, "messages: image source: invalid base64 data or media type"
					}
				case "url":
					if !strings.HasPrefix(b.Source.URL, "http") {
						return a, "messages: image source: invalid url"
					}
				default:
					return a, "messages: image source type must be base64 or url"
				}
			case "tool_use":
				if m.Role != "assistant" || b.ID == "" || !json.Valid(b.Input) || bytes.TrimSpace(b.Input)[0] != '{' {
					return a, "messages: tool_use blocks need an id and an object input, in assistant messages"
				}
				toolUses[b.ID] = true
			case "tool_result":
				if m.Role != "user" || !prevToolUses[b.ToolUseID] {
					return a, "messages: tool_result block(s) provided when previous message does not have tool_use block(s)"
				}
			case "thinking":
				if m.Role != "assistant" || b.Signature != FakeSignature {
					return a, "messages." + strconv.Itoa(i) + ".content: Invalid `signature` in `thinking` block"
				}
			case "redacted_thinking":
				if m.Role != "assistant" || b.Data == "" {
					return a, "messages." + strconv.Itoa(i) + ".content: redacted_thinking blocks need data"
				}
			case "server_tool_use", "web_search_tool_result":
				if m.Role != "assistant" {
					return a, "messages: server tool blocks belong to assistant messages"
				}
			case "document":
			default:
				return a, "messages: unknown content block type " + b.Type
			}
		}
		prevToolUses = toolUses
		last = bs
	}
	if req.Messages[len(req.Messages)-1].Role != "user" {
		return a, "the fake upstream expects the conversation to end with a user message"
	}
	a.promptTokens = max(a.promptTokens, 1)
	a.thinking = bytes.Contains(req.Thinking, []byte(`"enabled"`))
	var tools []anthropicTool
	for _, t := range req.Tools {
		if strings.HasPrefix(t.Type, "web_search") {
			a.webSearch = "search"
			continue
		}
		tools = append(tools, t)
	}
	req.Tools = tools

	var results, text []string
	for _, b := range last {
		switch b.Type {
		case "tool_result":
			results = append(results, toolResultText(b.Content))
		case "text":
			text = append(text, b.Text)
		case "image":
			if b.Source.Type == "url" {
				text = append(text, "[image url "+b.Source.URL+"]")
			} else {
				data, _ := base64.StdEncoding.DecodeString(b.Source.Data)
				text = append(text, "[image "+b.Source.MediaType+" "+strconv.Itoa(len(data))+" bytes]")
			}
		}
	}
	switch {
	case len(results) > 0:
		a.text = "tool said: " + strings.Join(results, "; ")
	case len(req.Tools) > 0 && (req.ToolChoice == nil || req.ToolChoice.Type != "none"):
		a.toolName = req.Tools[0].Name
		if req.ToolChoice != nil && req.ToolChoice.Type == "tool" {
			a.toolName = req.ToolChoice.Name
		}
		a.toolCallID = "toolu_fake" + strconv.FormatUint(s.seq.Add(1), 10)
		a.completionTokens = countWords(a.toolName) + countWords(anthropicToolInput)
		return a, ""
	default:
		a.text = "echo: " + strings.Join(text, " ")
	}
	a.completionTokens = countWords(a.text)
	return a, ""
}

// toolResultText is a tool result's content: a string, or its text blocks.
func toolResultText(raw json.RawMessage) string {
	bs, _ := blocks(raw)
	var parts []string
	for _, b := range bs {
		if b.Type == "text" {
			parts = append(parts, b.Text)
		}
	}
	return strings.Join(parts, " ")
}

// streamMessages sends the reply as Anthropic's named server-sent events.
func (s *Server) streamMessages(w http.ResponseWriter, r *http.Request, req *messagesRequest, a *chatAnswer) {
	n := s.seq.Add(1)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	c := &chunkStream{w: w, rc: http.NewResponseController(w), ctx: r.Context(), delay: s.opts.ChunkDelay}
	defer c.stop()
	event := func(name string, data []byte) bool {
		b := make([]byte, 0, len(name)+len(data)+16)
		b = append(b, "event: "...)
		b = append(b, name...)
		b = append(b, "\ndata: "...)
		b = append(b, data...)
		b = append(b, "\n\n"...)
		return c.send(b)
	}
	start := []byte(`{"type":"message_start","message":{"id":"msg_fake` + strconv.FormatUint(n, 10) + `","type":"message","role":"assistant","content":[],"model":`)
	start = appendJSONString(start, req.Model)
	start = append(start, `,"stop_reason":null,"stop_sequence":null,"usage":`...)
	start = appendAnthropicUsage(start, a.promptTokens, 1)
	start = append(start, "}}"...)
	ok := event("message_start", start) && event("ping", []byte(`{"type": "ping"}`))
	stop := "end_turn"
	index := "0"
	if ok && a.thinking {
		ok = event("content_block_start", []byte(`{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}`)) &&
			event("content_block_delta", []byte(`{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me think."}}`)) &&
			event("content_block_delta", []byte(`{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"`+FakeSignature+`"}}`)) &&
			event("content_block_stop", []byte(`{"type":"content_block_stop","index":0}`))
		index = "1"
	}
	if ok && a.toolName != "" {
		b := []byte(`{"type":"content_block_start","index":` + index + `,"content_block":{"type":"tool_use","id":`)
		b = appendJSONString(b, a.toolCallID)
		b = append(b, `,"name":`...)
		b = appendJSONString(b, a.toolName)
		b = append(b, `,"input":{}}}`...)
		ok = event("content_block_start", b)
		for _, piece := range []string{"", anthropicToolInput1, anthropicToolInput2} {
			d := append([]byte(`{"type":"content_block_delta","index":`+index+`,"delta":{"type":"input_json_delta","partial_json":`), appendJSONString(nil, piece)...)
			ok = ok && event("content_block_delta", append(d, "}}"...))
		}
		stop = "tool_use"
	} else if ok {
		ok = event("content_block_start", []byte(`{"type":"content_block_start","index":`+index+`,"content_block":{"type":"text","text":""}}`))
		chunks := s.chunks
		if req.Model == ModelStreamErrorEvent {
			chunks = max(chunks, 3)
		}
		for i, part := range splitText(a.text, chunks) {
			if i == 2 && req.Model == ModelStreamErrorEvent {
				event("error", []byte(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`))
				return
			}
			d := append([]byte(`{"type":"content_block_delta","index":`+index+`,"delta":{"type":"text_delta","text":`), appendJSONString(nil, part)...)
			ok = ok && event("content_block_delta", append(d, "}}"...))
		}
	}
	ok = ok && event("content_block_stop", []byte(`{"type":"content_block_stop","index":`+index+`}`))
	d := []byte(`{"type":"message_delta","delta":{"stop_reason":"` + stop + `","stop_sequence":null},"usage":{"output_tokens":`)
	d = strconv.AppendInt(d, int64(a.completionTokens), 10)
	ok = ok && event("message_delta", append(d, "}}"...)) && event("message_stop", []byte(`{"type":"message_stop"}`))
	if !ok {
		s.clientGone()
	}
}
