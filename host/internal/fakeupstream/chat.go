package fakeupstream

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// chatRequest is the part of a chat completion request the fake looks at.
// Everything else (n, temperature, ...) is accepted and ignored.
type chatRequest struct {
	Model         string          `json:"model"`
	Messages      []chatMessage   `json:"messages"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
	Tools         []chatTool      `json:"tools"`
	ToolChoice    json.RawMessage `json:"tool_choice"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"` // a string, an array of parts, or null
}

type chatTool struct {
	Type     string `json:"type"`
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

type contentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// The arguments of every fake tool call, and how a stream splits them.
const (
	toolArguments      = `{"city":"Paris"}`
	toolArgumentsPart1 = `{"city":`
	toolArgumentsPart2 = `"Paris"}`
)

// chatAnswer is what the fake "model" decided to say.
type chatAnswer struct {
	text             string // reply text; unused when toolName is set
	toolName         string // non-empty for a tool call
	toolCallID       string
	promptTokens     int
	completionTokens int
	// The Anthropic side only: a thinking block comes first (the request
	// enabled thinking), and a web search is run first (the request gave
	// the web_search server tool).
	thinking  bool
	webSearch string
}

var (
	bigOnce   sync.Once
	bigText   string
	bigTokens int
)

// bigOutput returns the BigOutputSize-byte reply of the big-output model.
func bigOutput() (string, int) {
	bigOnce.Do(func() {
		const word = "lorem ipsum dolor sit amet "
		var sb strings.Builder
		sb.Grow(BigOutputSize)
		for sb.Len()+len(word) <= BigOutputSize {
			sb.WriteString(word)
		}
		sb.WriteString(strings.Repeat("x", BigOutputSize-sb.Len()))
		bigText = sb.String()
		bigTokens = countWords(bigText)
	})
	return bigText, bigTokens
}

// messageText returns the text of a message content: the string itself, or
// the text parts of an array joined with single spaces. Other shapes give "".
func messageText(raw json.RawMessage) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case '[':
		var parts []contentPart
		if json.Unmarshal(raw, &parts) == nil {
			var sb strings.Builder
			for _, p := range parts {
				if p.Type != "text" {
					continue
				}
				if sb.Len() > 0 {
					sb.WriteByte(' ')
				}
				sb.WriteString(p.Text)
			}
			return sb.String()
		}
	}
	return ""
}

// answerFor decides the reply to a request.
func (s *Server) answerFor(req *chatRequest) chatAnswer {
	var a chatAnswer
	lastUser := ""
	for i := range req.Messages {
		text := messageText(req.Messages[i].Content)
		a.promptTokens += countWords(text)
		if req.Messages[i].Role == "user" {
			lastUser = text
		}
	}
	if a.promptTokens < 1 {
		a.promptTokens = 1
	}

	lastIsTool := false
	if n := len(req.Messages); n > 0 && req.Messages[n-1].Role == "tool" {
		lastIsTool = true
	}

	switch {
	case lastIsTool:
		a.text = "tool said: " + messageText(req.Messages[len(req.Messages)-1].Content)
	case len(req.Tools) > 0 && !toolChoiceNone(req.ToolChoice):
		a.toolName = req.Tools[0].Function.Name
		if a.toolName == "" {
			a.toolName = "unnamed_function"
		}
		a.toolCallID = "call_fake" + strconv.FormatUint(s.seq.Add(1), 10)
		a.completionTokens = countWords(a.toolName) + countWords(toolArguments)
		return a
	case req.Model == ModelBigOutput:
		a.text, a.completionTokens = bigOutput()
		return a
	default:
		a.text = "echo: " + lastUser
	}
	a.completionTokens = countWords(a.text)
	return a
}

func toolChoiceNone(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte(`"none"`))
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request, body []byte) {
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest,
			"We could not parse the JSON body of your request: "+err.Error(), typeInvalidRequest, "", "")
		return
	}
	if failByModel(w, req.Model) {
		return
	}
	if req.Model == ModelSlowHeaders && !sleepCtx(r.Context(), SlowHeadersDelay) {
		s.clientGone()
		return
	}
	a := s.answerFor(&req)
	if req.Stream {
		s.streamChat(w, r, &req, &a)
		return
	}
	s.writeChat(w, &req, &a)
}

// appendUsage appends a CompletionUsage object.
func appendUsage(b []byte, prompt, completion int) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(completion), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt+completion), 10)
	b = append(b, `,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0}`+
		`,"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,`+
		`"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`...)
	return b
}

// appendToolCall appends the complete tool_calls array of a non-stream reply.
func appendToolCall(b []byte, a *chatAnswer) []byte {
	b = append(b, `[{"id":`...)
	b = appendJSONString(b, a.toolCallID)
	b = append(b, `,"type":"function","function":{"name":`...)
	b = appendJSONString(b, a.toolName)
	b = append(b, `,"arguments":`...)
	b = appendJSONString(b, toolArguments)
	return append(b, "}}]"...)
}

// writeChat sends a chat.completion object.
func (s *Server) writeChat(w http.ResponseWriter, req *chatRequest, a *chatAnswer) {
	n := s.seq.Add(1)
	b := make([]byte, 0, 640+len(req.Model)+len(a.text)+len(a.text)/16)
	b = append(b, `{"id":"chatcmpl-fake`...)
	b = strconv.AppendUint(b, n, 10)
	b = append(b, `","object":"chat.completion","created":`...)
	b = strconv.AppendInt(b, time.Now().Unix(), 10)
	b = append(b, `,"model":`...)
	b = appendJSONString(b, req.Model)
	b = append(b, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)
	finish := "stop"
	if a.toolName != "" {
		b = append(b, `null,"tool_calls":`...)
		b = appendToolCall(b, a)
		finish = "tool_calls"
	} else {
		b = appendJSONString(b, a.text)
	}
	b = append(b, `,"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"`...)
	b = append(b, finish...)
	b = append(b, `"}],"usage":`...)
	b = appendUsage(b, a.promptTokens, a.completionTokens)
	b = append(b, `,"service_tier":"default","system_fingerprint":"`+systemFingerprint+`"}`...)
	s.reported(a)
	writeJSON(w, http.StatusOK, b, "req_fake"+strconv.FormatUint(n, 10))
}

// chunkStream writes chat.completion.chunk events. All chunks of a stream
// share the same leading bytes (id, created, model ...), which are built once.
type chunkStream struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	ctx   context.Context
	delay time.Duration
	timer *time.Timer

	head  []byte // `data: {"id":...,"choices":[`
	usage bool   // include_usage: add "usage":null to choice chunks
	buf   []byte
	sent  int
}

// choice writes one chunk holding a single choice with the given delta (a
// JSON object) and finish reason ("" means null). It waits the configured
// delay first, and reports false when the client is gone.
func (c *chunkStream) choice(delta []byte, finish string) bool {
	b := append(c.buf[:0], c.head...)
	b = append(b, `{"index":0,"delta":`...)
	b = append(b, delta...)
	b = append(b, `,"logprobs":null,"finish_reason":`...)
	if finish == "" {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = append(b, finish...)
		b = append(b, '"')
	}
	b = append(b, "}]"...)
	if c.usage {
		b = append(b, `,"usage":null`...)
	}
	b = append(b, "}\n\n"...)
	c.buf = b
	return c.send(b)
}

// usageChunk writes the trailing chunk with no choices and the usage totals.
func (c *chunkStream) usageChunk(prompt, completion int) bool {
	b := append(c.buf[:0], c.head...)
	b = append(b, `],"usage":`...)
	b = appendUsage(b, prompt, completion)
	b = append(b, "}\n\n"...)
	c.buf = b
	return c.send(b)
}

func (c *chunkStream) send(b []byte) bool {
	if !c.pause() {
		return false
	}
	c.sent++
	if _, err := c.w.Write(b); err != nil {
		return false
	}
	return c.rc.Flush() == nil
}

// pause waits the chunk delay before every chunk but the first, and in any
// case notices a client that went away.
func (c *chunkStream) pause() bool {
	if c.delay <= 0 || c.sent == 0 {
		return c.ctx.Err() == nil
	}
	if c.timer == nil {
		c.timer = time.NewTimer(c.delay)
	} else {
		c.timer.Reset(c.delay)
	}
	select {
	case <-c.timer.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

func (c *chunkStream) stop() {
	if c.timer != nil {
		c.timer.Stop()
	}
}

// Fixed deltas.
var (
	deltaRoleText = []byte(`{"role":"assistant","content":"","refusal":null}`)
	deltaEmpty    = []byte(`{}`)
	doneEvent     = []byte("data: [DONE]\n\n")
)

// streamChat sends the reply as server-sent events:
//
//	role chunk, content (or tool-call) chunks, finish chunk,
//	[usage chunk when include_usage], data: [DONE]
func (s *Server) streamChat(w http.ResponseWriter, r *http.Request, req *chatRequest, a *chatAnswer) {
	chunks, delay := s.chunks, s.opts.ChunkDelay
	switch req.Model {
	case ModelSlowStream:
		chunks, delay = SlowStreamChunks, SlowStreamDelay
	case ModelStreamErrorMidway:
		chunks = max(chunks, 3) // so that two chunks are not the whole reply
	}

	n := s.seq.Add(1)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Request-Id", "req_fake"+strconv.FormatUint(n, 10))
	w.WriteHeader(http.StatusOK)

	head := make([]byte, 0, 192+len(req.Model))
	head = append(head, `data: {"id":"chatcmpl-fake`...)
	head = strconv.AppendUint(head, n, 10)
	head = append(head, `","object":"chat.completion.chunk","created":`...)
	head = strconv.AppendInt(head, time.Now().Unix(), 10)
	head = append(head, `,"model":`...)
	head = appendJSONString(head, req.Model)
	head = append(head, `,"service_tier":"default","system_fingerprint":"`+systemFingerprint+`","choices":[`...)

	c := &chunkStream{
		w:     w,
		rc:    http.NewResponseController(w),
		ctx:   r.Context(),
		delay: delay,
		head:  head,
		usage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage,
		buf:   make([]byte, 0, 512),
	}
	defer c.stop()

	switch s.streamBody(c, req, a, chunks) {
	case streamAborted:
		return
	case streamClientGone:
		s.clientGone()
		return
	}
	if c.usage {
		if !c.usageChunk(a.promptTokens, a.completionTokens) {
			s.clientGone()
			return
		}
		s.reported(a)
	}
	if !c.send(doneEvent) {
		s.clientGone()
	}
}

type streamResult int

const (
	streamOK         streamResult = iota // all choice chunks were sent
	streamClientGone                     // the client went away
	streamAborted                        // the server cut the connection on purpose
)

// sent converts the outcome of one chunk write.
func sent(ok bool) streamResult {
	if ok {
		return streamOK
	}
	return streamClientGone
}

// streamBody writes every chunk up to and including the finish chunk. For
// stream-error-midway it cuts the connection after two content chunks.
func (s *Server) streamBody(c *chunkStream, req *chatRequest, a *chatAnswer, chunks int) streamResult {
	if a.toolName != "" {
		d := make([]byte, 0, 160+len(a.toolName))
		d = append(d, `{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":`...)
		d = appendJSONString(d, a.toolCallID)
		d = append(d, `,"type":"function","function":{"name":`...)
		d = appendJSONString(d, a.toolName)
		d = append(d, `,"arguments":""}}],"refusal":null}`...)
		for _, delta := range [][]byte{d, toolArgsDelta1, toolArgsDelta2} {
			if !c.choice(delta, "") {
				return streamClientGone
			}
		}
		return sent(c.choice(deltaEmpty, "tool_calls"))
	}

	if !c.choice(deltaRoleText, "") {
		return streamClientGone
	}
	if req.Model == ModelEndlessStream {
		delta := append([]byte(`{"content":"`), bytes.Repeat([]byte("x"), 1000)...)
		delta = append(delta, `"}`...)
		for c.choice(delta, "") {
			s.endless.Add(int64(len(c.buf)))
		}
		return streamClientGone
	}
	delta := make([]byte, 0, 32+len(a.text)/chunks+len(a.text)/(8*chunks))
	for i, part := range splitText(a.text, chunks) {
		if i == 2 && req.Model == ModelStreamErrorMidway {
			abortConnection(c.w)
			return streamAborted
		}
		delta = append(delta[:0], `{"content":`...)
		delta = appendJSONString(delta, part)
		delta = append(delta, '}')
		if !c.choice(delta, "") {
			return streamClientGone
		}
	}
	return sent(c.choice(deltaEmpty, "stop"))
}

var (
	toolArgsDelta1 = toolArgsDelta(toolArgumentsPart1)
	toolArgsDelta2 = toolArgsDelta(toolArgumentsPart2)
)

func toolArgsDelta(piece string) []byte {
	b := []byte(`{"tool_calls":[{"index":0,"function":{"arguments":`)
	b = appendJSONString(b, piece)
	return append(b, "}}]}"...)
}
