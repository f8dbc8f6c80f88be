package main

import (
	"bytes"
	"strconv"

	"github.com/llm-proxy/llm-proxy/sdk/chatreq"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// The request translation: the unified request (OpenAI chat completions)
// becomes a Messages API request. Values that need no change (strings,
// numbers, JSON schemas) are copied as they came; nothing is decoded into Go
// values.
//
//	OpenAI                                  Anthropic
//	system and developer messages           system (one string, or text blocks)
//	user / assistant / tool messages        messages, same roles merged so they alternate
//	tool message                            tool_result block in a user message
//	assistant tool_calls                    tool_use blocks, arguments parsed into input
//	image_url data: / http(s) URL           image block, base64 / url source
//	file with a PDF data URL                document block, base64 source
//	max_completion_tokens, max_tokens       max_tokens (the provider's default when absent)
//	stop                                    stop_sequences
//	temperature, top_p, top_k               the same
//	tools[].function                        tools[]: name, description, input_schema
//	tool_choice auto/none/required/named    tool_choice auto/none/any/tool
//	parallel_tool_calls: false              tool_choice.disable_parallel_tool_use
//	user                                    metadata.user_id
//	response_format json_schema             output_config.format json_schema

// Scratch buffers: a request is translated within one callback (the start
// of its stream) and the result handed to Send, which copies it, so the
// next stream's translation reuses them.
var (
	reqBuf = make([]byte, 0, 8<<10)
	msgBuf = make([]byte, 0, 8<<10)
	sysBuf = make([]byte, 0, 1<<10)
)

// reader reads the messages of the unified request; it keeps the tape of
// tool call arguments for the next translation.
var reader chatreq.Reader

// requestFields are the members of the unified request the translation
// reads.
type requestFields struct {
	model, messages, maxTokens, maxCompletionTokens, temperature, topP, topK rawjson.Value
	stop, tools, toolChoice, parallelToolCalls, user, n, responseFormat      rawjson.Value
}

// buildRequest translates the unified request (parsed) into a Messages
// request. An error is an *sdk.HTTPError (400) that names the offending
// field.
//
// parse indexes JSON found inside the request (tool call arguments):
// Stream.ParseJSON in a plugin, rawjson.Parse in tests.
func buildRequest(req rawjson.Value, s *settings, stream bool, parse chatreq.Parser) ([]byte, error) {
	var f requestFields
	for m := req.Members(); m.Next(); {
		v := m.Value()
		switch string(m.Key()) {
		case "model":
			f.model = v
		case "messages":
			f.messages = v
		case "max_tokens":
			f.maxTokens = v
		case "max_completion_tokens":
			f.maxCompletionTokens = v
		case "temperature":
			f.temperature = v
		case "top_p":
			f.topP = v
		case "top_k":
			f.topK = v
		case "stop":
			f.stop = v
		case "tools":
			f.tools = v
		case "tool_choice":
			f.toolChoice = v
		case "parallel_tool_calls":
			f.parallelToolCalls = v
		case "user":
			f.user = v
		case "n":
			f.n = v
		case "response_format":
			f.responseFormat = v
		}
	}
	if f.model.Kind() != rawjson.String {
		return nil, chatreq.BadRequest("model", "model must be a string")
	}
	if n, ok := f.n.Int(); ok && n > 1 {
		return nil, chatreq.BadRequest("n", "this provider returns one choice per request; n must be 1")
	}

	w := messageWriter{buf: append(msgBuf[:0], '['), sys: sysBuf[:0]}
	if err := w.messages(reader.Messages(f.messages, parse)); err != nil {
		return nil, err
	}
	if w.open == "" {
		return nil, chatreq.BadRequest("messages", "at least one user or assistant message with content is required")
	}
	w.buf = append(w.buf, "]}]"...)
	msgBuf, sysBuf = w.buf[:0], w.sys[:0]

	b := append(reqBuf[:0], `{"model":`...)
	b = append(b, f.model.Raw()...)
	b = append(b, `,"max_tokens":`...)
	switch {
	case f.maxCompletionTokens.Kind() == rawjson.Number:
		b = append(b, f.maxCompletionTokens.Raw()...)
	case f.maxTokens.Kind() == rawjson.Number:
		b = append(b, f.maxTokens.Raw()...)
	default:
		b = append(b, s.maxTokens...)
	}
	if len(w.sys) > 0 {
		b = append(b, `,"system":`...)
		if w.sysBlocks == 1 {
			b = append(b, w.sysText...)
		} else {
			b = append(b, '[')
			b = append(b, w.sys...)
			b = append(b, ']')
		}
	}
	b = append(b, `,"messages":`...)
	b = append(b, w.buf...)
	var err error
	if b, err = appendStop(b, f.stop); err != nil {
		return nil, err
	}
	for _, p := range [...]struct {
		name string
		v    rawjson.Value
	}{{"temperature", f.temperature}, {"top_p", f.topP}, {"top_k", f.topK}} {
		switch p.v.Kind() {
		case rawjson.Number:
			b = append(b, ',', '"')
			b = append(b, p.name...)
			b = append(b, '"', ':')
			b = append(b, p.v.Raw()...)
		case rawjson.Null, rawjson.Invalid:
		default:
			return nil, chatreq.BadRequest(p.name, p.name+" must be a number")
		}
	}
	if b, err = appendTools(b, f.tools, f.toolChoice, f.parallelToolCalls); err != nil {
		return nil, err
	}
	if f.user.Kind() == rawjson.String {
		b = append(b, `,"metadata":{"user_id":`...)
		b = append(b, f.user.Raw()...)
		b = append(b, '}')
	}
	if f.responseFormat.Get("type").StringIs("json_schema") {
		schema := f.responseFormat.Get("json_schema").Get("schema")
		if schema.Kind() != rawjson.Object {
			return nil, chatreq.BadRequest("response_format", "response_format.json_schema.schema must be an object")
		}
		b = append(b, `,"output_config":{"format":{"type":"json_schema","schema":`...)
		b = append(b, schema.Raw()...)
		b = append(b, "}}"...)
	}
	if stream {
		b = append(b, `,"stream":true`...)
	}
	b = append(b, '}')
	reqBuf = b[:0]
	return b, nil
}

// messageWriter builds the messages array, merging consecutive messages
// that map to the same role into one, and collects system text.
type messageWriter struct {
	buf       []byte // "[" then the messages; the open one lacks its "]}"
	open      string // role of the open message, "" before the first block
	sys       []byte // system text blocks, comma-separated
	sysText   []byte // the raw string of the first system text
	sysBlocks int
}

// next prepares for one more content block in a message of the given role.
func (w *messageWriter) next(role string) {
	switch {
	case w.open == role:
		w.buf = append(w.buf, ',')
		return
	case w.open != "":
		w.buf = append(w.buf, "]},"...)
	}
	w.buf = append(w.buf, `{"role":"`...)
	w.buf = append(w.buf, role...)
	w.buf = append(w.buf, `","content":[`...)
	w.open = role
}

// messages writes what m reads from the request's messages.
func (w *messageWriter) messages(m *chatreq.Messages) error {
	for m.Next() {
		var err error
		switch m.Kind() {
		case chatreq.Text:
			w.text(m.Role(), m.Value())
		case chatreq.Part:
			err = w.part(m.Message(), m.Index(), m.Role(), m.Type(), m.Value())
		case chatreq.ToolCall:
			w.toolUse(m.ID(), m.Name(), m.Arguments())
		case chatreq.ToolResult:
			err = w.toolResult(m.Message(), m.ID(), m.Value())
		}
		if err != nil {
			return err
		}
	}
	return m.Err()
}

// text adds a text block made of the string s, to system when it is system
// text; blank strings are skipped, as the Messages API refuses text blocks
// without visible text.
func (w *messageWriter) text(role chatreq.Role, s rawjson.Value) {
	if chatreq.Blank(s.Raw()) {
		return
	}
	if role == chatreq.System {
		w.systemText(s)
		return
	}
	w.next(role.String())
	w.buf = appendTextBlock(w.buf, s.Raw())
}

func appendTextBlock(b, s []byte) []byte {
	b = append(b, `{"type":"text","text":`...)
	b = append(b, s...)
	return append(b, '}')
}

// systemText adds a text block to the system prompt.
func (w *messageWriter) systemText(s rawjson.Value) {
	if w.sysBlocks > 0 {
		w.sys = append(w.sys, ',')
	} else {
		w.sysText = s.Raw()
	}
	w.sys = appendTextBlock(w.sys, s.Raw())
	w.sysBlocks++
}

// part adds an image or a document block, part j of messages[i], to a user
// message: the Messages API takes them there only.
func (w *messageWriter) part(i, j int, role chatreq.Role, typ []byte, p rawjson.Value) error {
	if role != chatreq.User {
		return chatreq.UnsupportedPart(i, j, typ, role.String())
	}
	where := chatreq.Elem(chatreq.Elem("messages", i)+".content", j)
	var err error
	switch {
	case rawjson.Equal(typ, "image_url"):
		w.next("user")
		w.buf, err = appendImage(w.buf, p, where)
	case rawjson.Equal(typ, "file"):
		w.next("user")
		w.buf, err = appendDocument(w.buf, p, where)
	default:
		err = chatreq.UnsupportedPart(i, j, typ, "user")
	}
	return err
}

// appendImage writes an image block for an image_url part: a data URL
// becomes a base64 source, an http(s) URL a url source.
func appendImage(b []byte, part rawjson.Value, param string) ([]byte, error) {
	iu := part.Get("image_url")
	if iu.Kind() == rawjson.Object {
		iu = iu.Get("url")
	}
	u, ok := iu.Str()
	if !ok {
		return b, chatreq.BadRequest(param, param+".image_url.url must be a string")
	}
	safe := !iu.Escaped() // u is the literal's content: it can be copied as it is
	if mediaType, data, isData := chatreq.ParseDataURL(u); isData {
		if mediaType == nil || data == nil {
			return b, chatreq.BadRequest(param, param+": a data URL must be data:<media type>;base64,<data>")
		}
		b = append(b, `{"type":"image","source":{"type":"base64","media_type":`...)
		b = rawjson.AppendString(b, bytes.ToLower(mediaType))
		b = append(b, `,"data":`...)
		b = appendContent(b, data, safe)
		return append(b, "}}"...), nil
	}
	if chatreq.HasPrefixFold(u, "https://") || chatreq.HasPrefixFold(u, "http://") {
		b = append(b, `{"type":"image","source":{"type":"url","url":`...)
		b = appendContent(b, u, safe)
		return append(b, "}}"...), nil
	}
	return b, chatreq.BadRequest(param, param+": an image must be an http(s) URL or a base64 data URL")
}

// appendDocument writes a document block for a file part carrying a PDF as
// a data URL in file.file_data.
func appendDocument(b []byte, part rawjson.Value, param string) ([]byte, error) {
	fd := part.Get("file").Get("file_data")
	u, ok := fd.Str()
	mediaType, data, isData := chatreq.ParseDataURL(u)
	if !ok || !isData || data == nil || !bytes.EqualFold(mediaType, []byte("application/pdf")) {
		return b, chatreq.BadRequest(param, param+": only PDF files sent as a base64 data URL in file.file_data are supported")
	}
	b = append(b, `{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":`...)
	b = appendContent(b, data, !fd.Escaped())
	return append(b, "}}"...), nil
}

// appendContent writes s as a string literal; safe means s is the content of
// a literal without escapes, which can be copied as it is.
func appendContent(b, s []byte, safe bool) []byte {
	if !safe {
		return rawjson.AppendString(b, s)
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// toolUse adds a tool_use block to the assistant turn.
func (w *messageWriter) toolUse(id, name rawjson.Value, args []byte) {
	w.next("assistant")
	w.buf = append(w.buf, `{"type":"tool_use","id":`...)
	w.buf = append(w.buf, id.Raw()...)
	w.buf = append(w.buf, `,"name":`...)
	w.buf = append(w.buf, name.Raw()...)
	w.buf = append(w.buf, `,"input":`...)
	w.buf = append(w.buf, args...)
	w.buf = append(w.buf, '}')
}

// toolResult adds a tool_result block for messages[i] to the user turn;
// consecutive tool messages (parallel calls) end up in one user message.
// The result may be text and images.
func (w *messageWriter) toolResult(i int, id, content rawjson.Value) error {
	w.next("user")
	w.buf = append(w.buf, `{"type":"tool_result","tool_use_id":`...)
	w.buf = append(w.buf, id.Raw()...)
	switch content.Kind() {
	case rawjson.String:
		if len(content.Raw()) > 2 {
			w.buf = append(w.buf, `,"content":`...)
			w.buf = append(w.buf, content.Raw()...)
		}
	case rawjson.Array:
		w.buf = append(w.buf, `,"content":[`...)
		n, j := 0, 0
		for e := content.Elements(); e.Next(); j++ {
			p := e.Value()
			param := chatreq.Elem(chatreq.Elem("messages", i)+".content", j)
			typ, _ := p.Get("type").Str()
			switch string(typ) {
			case "text":
				t := p.Get("text")
				if t.Kind() != rawjson.String {
					return chatreq.BadRequest(param, param+".text must be a string")
				}
				if chatreq.Blank(t.Raw()) {
					continue
				}
				if n > 0 {
					w.buf = append(w.buf, ',')
				}
				w.buf = appendTextBlock(w.buf, t.Raw())
			case "image_url":
				if n > 0 {
					w.buf = append(w.buf, ',')
				}
				var err error
				if w.buf, err = appendImage(w.buf, p, param); err != nil {
					return err
				}
			default:
				return chatreq.BadRequest(param, param+": tool results may hold text and images, not "+strconv.Quote(string(typ)))
			}
			n++
		}
		w.buf = append(w.buf, ']')
	case rawjson.Null, rawjson.Invalid:
	default:
		param := chatreq.Elem("messages", i) + ".content"
		return chatreq.BadRequest(param, param+" must be a string or an array")
	}
	w.buf = append(w.buf, '}')
	return nil
}

// appendStop writes stop_sequences from stop (a string or an array of
// strings).
func appendStop(b []byte, stop rawjson.Value) ([]byte, error) {
	switch stop.Kind() {
	case rawjson.String:
		if len(stop.Raw()) > 2 {
			b = append(b, `,"stop_sequences":[`...)
			b = append(b, stop.Raw()...)
			b = append(b, ']')
		}
	case rawjson.Array:
		n := 0
		for e := stop.Elements(); e.Next(); n++ {
			if e.Value().Kind() != rawjson.String {
				return b, chatreq.BadRequest("stop", "stop must be a string or an array of strings")
			}
		}
		if n > 0 {
			b = append(b, `,"stop_sequences":`...)
			b = append(b, stop.Raw()...)
		}
	case rawjson.Null, rawjson.Invalid:
	default:
		return b, chatreq.BadRequest("stop", "stop must be a string or an array of strings")
	}
	return b, nil
}

// appendTools writes tools and tool_choice. Without tools, tool_choice is
// left out (the Messages API refuses it alone).
func appendTools(b []byte, tools, choice, parallel rawjson.Value) ([]byte, error) {
	switch tools.Kind() {
	case rawjson.Null, rawjson.Invalid:
		return b, nil
	case rawjson.Array:
	default:
		return b, chatreq.BadRequest("tools", "tools must be an array")
	}
	start := len(b)
	b = append(b, `,"tools":[`...)
	j := 0
	for e := tools.Elements(); e.Next(); j++ {
		t := e.Value()
		param := chatreq.Elem("tools", j)
		if typ := t.Get("type"); typ.Exists() && !typ.StringIs("function") {
			return b, chatreq.BadRequest(param, param+": only tools of type function are supported by this provider")
		}
		fn := t.Get("function")
		name := fn.Get("name")
		if name.Kind() != rawjson.String {
			return b, chatreq.BadRequest(param, param+".function.name must be a string")
		}
		if j > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = append(b, name.Raw()...)
		if d := fn.Get("description"); d.Kind() == rawjson.String {
			b = append(b, `,"description":`...)
			b = append(b, d.Raw()...)
		}
		b = append(b, `,"input_schema":`...)
		if params := fn.Get("parameters"); params.Kind() == rawjson.Object && params.Len() > 0 {
			b = append(b, params.Raw()...)
		} else {
			b = append(b, `{"type":"object","properties":{}}`...)
		}
		b = append(b, '}')
	}
	if j == 0 {
		return b[:start], nil
	}
	b = append(b, ']')

	noParallel := parallel.Kind() == rawjson.Bool && !parallel.IsTrue()
	var typ string
	var name []byte
	switch choice.Kind() {
	case rawjson.String:
		c, _ := choice.Str()
		switch string(c) {
		case "auto":
			typ = "auto"
		case "none":
			return append(b, `,"tool_choice":{"type":"none"}`...), nil
		case "required":
			typ = "any"
		default:
			return b, chatreq.BadRequest("tool_choice", "tool_choice must be auto, none, required or a named function")
		}
	case rawjson.Object:
		n := choice.Get("function").Get("name")
		if !choice.Get("type").StringIs("function") || n.Kind() != rawjson.String {
			return b, chatreq.BadRequest("tool_choice", "tool_choice must be auto, none, required or a named function")
		}
		typ, name = "tool", n.Raw()
	case rawjson.Null, rawjson.Invalid:
		if !noParallel {
			return b, nil
		}
		typ = "auto"
	default:
		return b, chatreq.BadRequest("tool_choice", "tool_choice must be a string or an object")
	}
	b = append(b, `,"tool_choice":{"type":"`...)
	b = append(b, typ...)
	b = append(b, '"')
	if name != nil {
		b = append(b, `,"name":`...)
		b = append(b, name...)
	}
	if noParallel {
		b = append(b, `,"disable_parallel_tool_use":true`...)
	}
	return append(b, '}'), nil
}
