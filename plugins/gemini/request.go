package main

import (
	"bytes"
	"errors"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/chatreq"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// The request translation: the unified request (OpenAI chat completions)
// becomes a generateContent request.
//
//	OpenAI                                Gemini
//	system and developer messages         systemInstruction.parts
//	user / assistant messages             contents, roles user / model, same roles merged
//	text parts                            {"text"}
//	image_url, file and input_audio       {"inlineData": {mimeType, data}}
//	  with base64 data (data: URLs)
//	image_url with an http(s) URL         {"inlineData"} with the image the host
//	                                        downloads (Stream.FetchImages, see chat)
//	assistant tool_calls                  {"functionCall": {name, args}} parts, with the
//	                                      thoughtSignature kept in the call's id
//	tool messages                         {"functionResponse": {name, response}} parts of a
//	                                      user turn, the name found through tool_call_id
//	temperature, top_p, top_k, seed,      generationConfig: temperature, topP, topK, seed,
//	  presence/frequency_penalty            presencePenalty, frequencyPenalty
//	max_completion_tokens, max_tokens     generationConfig.maxOutputTokens
//	stop, n                               generationConfig.stopSequences, candidateCount
//	response_format json_object           generationConfig.responseMimeType application/json
//	  json_schema                           and responseSchema (schema.go)
//	tools[].function                      tools[0].functionDeclarations (schema.go)
//	tool_choice auto/none/required/named  toolConfig.functionCallingConfig AUTO/NONE/ANY/ANY
//	                                        with allowedFunctionNames

// fetcher answers for the image at an http(s) URL: its media type and its
// bytes in base64. It is Images.Get of the images the host downloaded, or,
// on the first pass over a request, collectURL, which only notes the URL.
type fetcher func(url string) (string, []byte, error)

// Buffers reused by the callbacks of a warm instance; the request built in
// them is sent (Stream.Send copies it) before the callback returns.
var (
	reqBuf = make([]byte, 0, 8<<10)
	cntBuf = make([]byte, 0, 8<<10)
	sysBuf = make([]byte, 0, 1<<10)
)

// reader reads the messages of the unified request; it keeps the tape of
// tool call arguments for the next request.
var reader chatreq.Reader

// signatureSentinel is the value Google documents for a function call
// whose thought signature is lost (a history the client made up): it
// tells Gemini 3 not to validate the signature.
const signatureSentinel = "skip_thought_signature_validator"

func buildRequest(req rawjson.Value, parse chatreq.Parser, fetch fetcher) ([]byte, error) {
	var messages, maxTokens, maxCompletionTokens, stop, n, responseFormat, tools, toolChoice rawjson.Value
	var numbers [6]rawjson.Value // temperature, top_p, top_k, seed, presence, frequency
	for m := req.Members(); m.Next(); {
		v := m.Value()
		switch string(m.Key()) {
		case "messages":
			messages = v
		case "max_tokens":
			maxTokens = v
		case "max_completion_tokens":
			maxCompletionTokens = v
		case "temperature":
			numbers[0] = v
		case "top_p":
			numbers[1] = v
		case "top_k":
			numbers[2] = v
		case "seed":
			numbers[3] = v
		case "presence_penalty":
			numbers[4] = v
		case "frequency_penalty":
			numbers[5] = v
		case "stop":
			stop = v
		case "n":
			n = v
		case "response_format":
			responseFormat = v
		case "tools":
			tools = v
		case "tool_choice":
			toolChoice = v
		}
	}
	w := contentWriter{buf: append(cntBuf[:0], '['), sys: sysBuf[:0], parse: parse, fetch: fetch}
	if err := w.messages(reader.Messages(messages, parse)); err != nil {
		return nil, err
	}
	if w.open == "" {
		return nil, chatreq.BadRequest("messages", "at least one user or assistant message with content is required")
	}
	w.buf = append(w.buf, "]}]"...)
	cntBuf, sysBuf = w.buf[:0], w.sys[:0]

	b := append(reqBuf[:0], `{"contents":`...)
	b = append(b, w.buf...)
	if len(w.sys) > 0 {
		b = append(b, `,"systemInstruction":{"parts":[`...)
		b = append(b, w.sys...)
		b = append(b, "]}"...)
	}
	var err error
	if b, err = appendTools(b, tools, toolChoice); err != nil {
		return nil, err
	}

	// generationConfig, left out when empty.
	start := len(b)
	b = append(b, `,"generationConfig":{`...)
	fields := 0
	field := func(name string) {
		if fields > 0 {
			b = append(b, ',')
		}
		fields++
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
	}
	for j, name := range [...]string{"temperature", "topP", "topK", "seed", "presencePenalty", "frequencyPenalty"} {
		v := numbers[j]
		switch v.Kind() {
		case rawjson.Number:
			field(name)
			b = append(b, v.Raw()...)
		case rawjson.Null, rawjson.Invalid:
		default:
			return nil, chatreq.BadRequest(openAIName[j], openAIName[j]+" must be a number")
		}
	}
	switch {
	case maxCompletionTokens.Kind() == rawjson.Number:
		field("maxOutputTokens")
		b = append(b, maxCompletionTokens.Raw()...)
	case maxTokens.Kind() == rawjson.Number:
		field("maxOutputTokens")
		b = append(b, maxTokens.Raw()...)
	}
	switch stop.Kind() {
	case rawjson.String:
		if len(stop.Raw()) > 2 {
			field("stopSequences")
			b = append(b, '[')
			b = append(b, stop.Raw()...)
			b = append(b, ']')
		}
	case rawjson.Array:
		for e := stop.Elements(); e.Next(); {
			if e.Value().Kind() != rawjson.String {
				return nil, chatreq.BadRequest("stop", "stop must be a string or an array of strings")
			}
		}
		if stop.Len() > 0 {
			field("stopSequences")
			b = append(b, stop.Raw()...)
		}
	case rawjson.Null, rawjson.Invalid:
	default:
		return nil, chatreq.BadRequest("stop", "stop must be a string or an array of strings")
	}
	if k, ok := n.Int(); ok && k != 1 {
		if k < 1 {
			return nil, chatreq.BadRequest("n", "n must be at least 1")
		}
		field("candidateCount")
		b = append(b, n.Raw()...)
	}
	switch typ, _ := responseFormat.Get("type").Str(); string(typ) {
	case "json_object":
		field("responseMimeType")
		b = append(b, `"application/json"`...)
	case "json_schema":
		schema := responseFormat.Get("json_schema").Get("schema")
		if schema.Kind() != rawjson.Object {
			return nil, chatreq.BadRequest("response_format", "response_format.json_schema.schema must be an object")
		}
		field("responseMimeType")
		b = append(b, `"application/json"`...)
		field("responseSchema")
		b = appendSchema(b, schema, 0)
	}
	if fields == 0 {
		b = b[:start]
	} else {
		b = append(b, '}')
	}
	b = append(b, '}')
	reqBuf = b[:0]
	return b, nil
}

var openAIName = [...]string{"temperature", "top_p", "top_k", "seed", "presence_penalty", "frequency_penalty"}

// contentWriter builds the contents array, merging consecutive messages of
// the same role, and collects system text parts.
type contentWriter struct {
	buf   []byte // "[" then the contents; the open one lacks its "]}"
	open  string // role of the open content, "" before the first part
	calls int    // function calls in the open model content
	sys   []byte // system text parts, comma-separated
	// parse checks tool results that look like JSON objects.
	parse chatreq.Parser
	fetch fetcher
	// names maps the id of each tool call seen so far to its function
	// name, for the functionResponse parts of tool messages.
	names []toolName
}

type toolName struct{ id, name []byte }

// resultTape is reused to check tool results that look like JSON objects.
var resultTape []uint32

// roleName is Gemini's name of a role: model for assistant.
func roleName(r chatreq.Role) string {
	if r == chatreq.Assistant {
		return "model"
	}
	return r.String()
}

// next prepares for one more part in a content of the given role.
func (w *contentWriter) next(role string) {
	switch {
	case w.open == role:
		w.buf = append(w.buf, ',')
		return
	case w.open != "":
		w.buf = append(w.buf, "]},"...)
	}
	w.buf = append(w.buf, `{"role":"`...)
	w.buf = append(w.buf, role...)
	w.buf = append(w.buf, `","parts":[`...)
	w.open = role
	w.calls = 0
}

// messages writes what m reads from the request's messages.
func (w *contentWriter) messages(m *chatreq.Messages) error {
	for m.Next() {
		var err error
		switch m.Kind() {
		case chatreq.Text:
			w.text(m.Role(), m.Value())
		case chatreq.Part:
			err = w.part(m.Message(), m.Index(), m.Role(), m.Type(), m.Value())
		case chatreq.ToolCall:
			w.functionCall(m.ID(), m.Name(), m.Arguments())
		case chatreq.ToolResult:
			err = w.functionResponse(m.Message(), m.ID(), m.Value())
		}
		if err != nil {
			return err
		}
	}
	return m.Err()
}

// text adds a text part, to systemInstruction when it is system text;
// blank strings are skipped.
func (w *contentWriter) text(role chatreq.Role, s rawjson.Value) {
	if chatreq.Blank(s.Raw()) {
		return
	}
	if role == chatreq.System {
		if len(w.sys) > 0 {
			w.sys = append(w.sys, ',')
		}
		w.sys = append(w.sys, `{"text":`...)
		w.sys = append(w.sys, s.Raw()...)
		w.sys = append(w.sys, '}')
		return
	}
	w.next(roleName(role))
	w.buf = append(w.buf, `{"text":`...)
	w.buf = append(w.buf, s.Raw()...)
	w.buf = append(w.buf, '}')
}

// part adds an inlineData part for an image, a file or a piece of audio,
// part j of messages[i], to a user message.
func (w *contentWriter) part(i, j int, role chatreq.Role, typ []byte, p rawjson.Value) error {
	if role != chatreq.User {
		return chatreq.UnsupportedPart(i, j, typ, roleName(role))
	}
	where := chatreq.Elem(chatreq.Elem("messages", i)+".content", j)
	var err error
	switch {
	case rawjson.Equal(typ, "image_url"):
		iu := p.Get("image_url")
		if iu.Kind() == rawjson.Object {
			iu = iu.Get("url")
		}
		w.next("user")
		if u, _ := iu.Str(); w.fetch != nil && (chatreq.HasPrefixFold(u, "https://") || chatreq.HasPrefixFold(u, "http://")) {
			w.buf, err = appendFetched(w.buf, w.fetch, string(u), where)
		} else {
			w.buf, err = appendDataURL(w.buf, iu, where, "an image")
		}
	case rawjson.Equal(typ, "file"):
		w.next("user")
		w.buf, err = appendDataURL(w.buf, p.Get("file").Get("file_data"), where, "a file")
	case rawjson.Equal(typ, "input_audio"):
		a := p.Get("input_audio")
		data := a.Get("data")
		format, _ := a.Get("format").Str()
		if data.Kind() != rawjson.String || len(format) == 0 || chatreq.Blank(a.Get("format").Raw()) {
			return chatreq.BadRequest(where, where+".input_audio needs data and format")
		}
		w.next("user")
		w.buf = append(w.buf, `{"inlineData":{"mimeType":`...)
		w.buf = rawjson.AppendString(w.buf, "audio/"+string(bytes.ToLower(format)))
		w.buf = append(w.buf, `,"data":`...)
		w.buf = append(w.buf, data.Raw()...)
		w.buf = append(w.buf, "}}"...)
	default:
		err = chatreq.UnsupportedPart(i, j, typ, "user")
	}
	return err
}

// appendFetched writes an inlineData part for an image the host downloaded
// (Stream.FetchImages): Gemini wants image bytes inline. A URL the host refuses or
// cannot fetch is the client's mistake: a 400 that says why.
func appendFetched(b []byte, fetch fetcher, url, param string) ([]byte, error) {
	mt, data, err := fetch(url)
	if err != nil {
		why := "could not be downloaded"
		var se *sdk.StatusError
		if errors.As(err, &se) {
			switch se.Status {
			case abi.StatusDenied:
				why = "is not allowed (images are fetched from public http(s) addresses only, and only where the gateway's operator allows it)"
			case abi.StatusMalformed:
				why = "is not an image (png, jpeg, webp, gif, heic or heif)"
			case abi.StatusLimit:
				why = "is too large, or the request links to too many images"
			case abi.StatusTimeout:
				why = "did not answer in time"
			}
		}
		return b, chatreq.BadRequest(param, param+": the image URL "+why)
	}
	b = append(b, `{"inlineData":{"mimeType":`...)
	b = rawjson.AppendString(b, mt)
	b = append(b, `,"data":"`...)
	b = append(b, data...) // base64: nothing to escape
	return append(b, `"}}`...), nil
}

// appendDataURL writes an inlineData part for a base64 data URL. A file
// given by http(s) URL is refused: only images are fetched.
func appendDataURL(b []byte, url rawjson.Value, param, what string) ([]byte, error) {
	u, ok := url.Str()
	if !ok {
		return b, chatreq.BadRequest(param, param+": the URL must be a string")
	}
	mediaType, data, isData := chatreq.ParseDataURL(u)
	if !isData {
		return b, chatreq.BadRequest(param, param+": "+what+" must be sent as a base64 data URL (or, for an image, an http(s) URL)")
	}
	if mediaType == nil || data == nil {
		return b, chatreq.BadRequest(param, param+": a data URL must be data:<media type>;base64,<data>")
	}
	b = append(b, `{"inlineData":{"mimeType":`...)
	b = rawjson.AppendString(b, bytes.ToLower(mediaType))
	b = append(b, `,"data":`...)
	if url.Escaped() {
		b = rawjson.AppendString(b, data)
	} else {
		b = append(b, '"')
		b = append(b, data...)
		b = append(b, '"')
	}
	return append(b, "}}"...), nil
}

// functionCall adds a functionCall part to the model turn, with the
// thought signature its id carries (see callID).
func (w *contentWriter) functionCall(id, name rawjson.Value, args []byte) {
	idv, _ := id.Str()
	w.names = append(w.names, toolName{idv, name.Raw()})
	w.next("model")
	w.buf = append(w.buf, `{"functionCall":{"name":`...)
	w.buf = append(w.buf, name.Raw()...)
	w.buf = append(w.buf, `,"args":`...)
	w.buf = append(w.buf, args...)
	w.buf = append(w.buf, '}')
	sig, ours := signatureOf(idv)
	if sig == nil && !ours && w.calls == 0 {
		sig = []byte(signatureSentinel)
	}
	if sig != nil {
		w.buf = append(w.buf, `,"thoughtSignature":`...)
		w.buf = rawjson.AppendString(w.buf, sig)
	}
	w.buf = append(w.buf, '}')
	w.calls++
}

// functionResponse adds a functionResponse part for messages[i] to the
// user turn; consecutive tool messages (parallel calls) end up in one turn,
// as Gemini expects one response part per call.
func (w *contentWriter) functionResponse(i int, id, content rawjson.Value) error {
	idv, _ := id.Str()
	var name []byte
	for k := len(w.names) - 1; k >= 0; k-- {
		if bytes.Equal(w.names[k].id, idv) {
			name = w.names[k].name
			break
		}
	}
	if name == nil {
		param := chatreq.Elem("messages", i) + ".tool_call_id"
		return chatreq.BadRequest(param, param+" "+string(id.Raw())+" answers no tool call of an earlier assistant message")
	}
	w.next("user")
	w.buf = append(w.buf, `{"functionResponse":{"name":`...)
	w.buf = append(w.buf, name...)
	w.buf = append(w.buf, `,"response":`...)
	// The response is an object: a tool's JSON object result is passed as
	// it is, anything else goes under "output", as Google suggests.
	switch content.Kind() {
	case rawjson.String:
		s, _ := content.Str()
		if t := bytes.TrimSpace(s); len(t) > 0 && t[0] == '{' {
			if doc, err := w.parse(t, resultTape); err == nil && doc.Root().Kind() == rawjson.Object {
				resultTape = doc.Tape
				w.buf = append(w.buf, t...)
				break
			}
		}
		w.buf = append(w.buf, `{"output":`...)
		w.buf = append(w.buf, content.Raw()...)
		w.buf = append(w.buf, '}')
	case rawjson.Array:
		// Text parts, joined: their contents can be concatenated raw.
		w.buf = append(w.buf, `{"output":"`...)
		for e := content.Elements(); e.Next(); {
			t := e.Value().Get("text")
			if t.Kind() != rawjson.String {
				param := chatreq.Elem("messages", i) + ".content"
				return chatreq.BadRequest(param, param+": tool results may hold text parts only")
			}
			raw := t.Raw()
			w.buf = append(w.buf, raw[1:len(raw)-1]...)
		}
		w.buf = append(w.buf, `"}`...)
	default:
		w.buf = append(w.buf, `{"output":""}`...)
	}
	w.buf = append(w.buf, "}}"...)
	return nil
}

// appendTools writes tools and toolConfig.
func appendTools(b []byte, tools, choice rawjson.Value) ([]byte, error) {
	switch tools.Kind() {
	case rawjson.Null, rawjson.Invalid:
		return b, nil
	case rawjson.Array:
	default:
		return b, chatreq.BadRequest("tools", "tools must be an array")
	}
	if tools.Len() == 0 {
		return b, nil
	}
	b = append(b, `,"tools":[{"functionDeclarations":[`...)
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
		if p := fn.Get("parameters"); p.Kind() == rawjson.Object && p.Get("properties").Len() > 0 {
			b = append(b, `,"parameters":`...)
			b = appendSchema(b, p, 0)
		}
		b = append(b, '}')
	}
	b = append(b, "]}]"...)

	switch choice.Kind() {
	case rawjson.String:
		c, _ := choice.Str()
		mode := ""
		switch string(c) {
		case "auto":
			mode = "AUTO"
		case "none":
			mode = "NONE"
		case "required":
			mode = "ANY"
		default:
			return b, chatreq.BadRequest("tool_choice", "tool_choice must be auto, none, required or a named function")
		}
		b = append(b, `,"toolConfig":{"functionCallingConfig":{"mode":"`...)
		b = append(b, mode...)
		b = append(b, `"}}`...)
	case rawjson.Object:
		n := choice.Get("function").Get("name")
		if !choice.Get("type").StringIs("function") || n.Kind() != rawjson.String {
			return b, chatreq.BadRequest("tool_choice", "tool_choice must be auto, none, required or a named function")
		}
		b = append(b, `,"toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":[`...)
		b = append(b, n.Raw()...)
		b = append(b, "]}}"...)
	case rawjson.Null, rawjson.Invalid:
	default:
		return b, chatreq.BadRequest("tool_choice", "tool_choice must be a string or an object")
	}
	return b, nil
}
