// Command demo is a provider plugin that answers on its own, without an
// upstream, so a fresh LLM Proxy shows the whole request path (client key,
// routing, a wasm plugin, streaming, usage) before any provider key is set.
//
//   - demo-echo answers "You said: <last user message>".
//   - demo-story answers a short fixed story.
//   - Embeddings are 8 numbers derived from the input text.
//
// A streamed story shows tokens arriving: its words are emitted one per
// timer callback, 30 ms apart (Stream.After). Nothing in a plugin may
// sleep, since an instance serves many streams at once, so each stream's
// progress lives in its own teller value, which the timer's callback
// carries on from.
//
// It reads requests through the host's JSON tape (sdk/rawjson) and writes
// its answers by appending bytes, as a plugin should: encoding/json would
// make the .wasm 1.5 MB larger, and every loaded copy of it too. The demo
// once used encoding/json, and its answers are still, byte for byte, what
// that wrote: keys in sorted order, <, > and & escaped (appendString). It
// reads requests as encoding/json read them too: keys matched without
// regard to case, a repeated key read over the earlier one, invalid UTF-8
// as U+FFFD, and the same message for a field of the wrong type.
package main

import (
	"hash/fnv"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

const story = "Once upon a time a small proxy carried words between people and the models " +
	"they talked to. Each word went through a tiny WebAssembly plugin, and every one " +
	"arrived safely. The end."

type plugin struct{}

// reqDoc is the request being read. It lives in a package variable, so
// that its tape is reused from call to call (and Values of it do not move
// a local Doc to the heap); nothing keeps a Value past the callback.
var reqDoc rawjson.Doc

// request parses the request.
func request(s *sdk.Stream) (rawjson.Value, error) {
	var err error
	reqDoc, err = s.ParseJSON(s.Request(), reqDoc.Tape)
	if err == rawjson.ErrSyntax {
		return rawjson.Value{}, &sdk.HTTPError{Status: 400, Message: "demo: the request body is not valid JSON"}
	}
	return reqDoc.Root(), err
}

// chatRequest is what the demo reads of a chat request.
type chatRequest struct {
	model    string
	messages []message
}

type message struct {
	role    string
	content rawjson.Value
}

// The types named in the messages for a value of the wrong type, as
// encoding/json named them.
const (
	chatRequestType = "main.chatRequest"
	messageType     = `struct { Role string "json:\"role\""; Content json.RawMessage "json:\"content\"" }`
	embeddingsType  = `struct { Model string "json:\"model\""; Input json.RawMessage "json:\"input\"" }`
)

// readChat reads a chat request: a JSON object (null is an empty one) with
// a string model and an array of messages.
func readChat(v rawjson.Value) (req chatRequest, err error) {
	switch v.Kind() {
	case rawjson.Object:
	case rawjson.Null:
		return req, nil
	default:
		return req, typeError(v, "Go value of type "+chatRequestType)
	}
	for m := v.Members(); m.Next(); {
		v := m.Value()
		switch {
		case is(&m, "model"):
			if !setString(&req.model, v) {
				return req, typeError(v, "Go struct field chatRequest.model of type string")
			}
		case is(&m, "messages"):
			switch v.Kind() {
			case rawjson.Null:
				req.messages = nil
			case rawjson.Array:
				// A repeated "messages" is read over the earlier one:
				// element i keeps what the new element i does not set.
				n := 0
				for e := v.Elements(); e.Next(); n++ {
					if n == len(req.messages) {
						req.messages = append(req.messages, message{})
					}
					if err := readMessage(&req.messages[n], e.Value()); err != nil {
						return req, err
					}
				}
				req.messages = req.messages[:n]
			default:
				return req, typeError(v, "Go struct field chatRequest.messages of type []"+messageType)
			}
		}
	}
	return req, nil
}

// readMessage reads a message: an object (or null, which sets nothing)
// with a string role and any content.
func readMessage(msg *message, v rawjson.Value) error {
	switch v.Kind() {
	case rawjson.Object:
	case rawjson.Null:
		return nil
	default:
		return typeError(v, "Go struct field chatRequest.messages of type "+messageType)
	}
	for m := v.Members(); m.Next(); {
		switch {
		case is(&m, "role"):
			if !setString(&msg.role, m.Value()) {
				return typeError(m.Value(), "Go struct field .messages.role of type string")
			}
		case is(&m, "content"):
			msg.content = m.Value()
		}
	}
	return nil
}

// text returns a message's text, whether content is a string or an array
// of parts (the text of its text parts, joined); anything else has none.
func text(content rawjson.Value) string {
	switch content.Kind() {
	case rawjson.String:
		return decode(content)
	case rawjson.Array:
		var b strings.Builder
		for e := content.Elements(); e.Next(); {
			var typ, txt string
			for m := e.Value().Members(); m.Next(); { // nothing when not an object
				switch {
				case is(&m, "type"):
					setString(&typ, m.Value())
				case is(&m, "text"):
					setString(&txt, m.Value())
				}
			}
			if typ == "text" {
				b.WriteString(txt)
			}
		}
		return b.String()
	}
	return ""
}

// is reports whether the current member is named name (lower case ASCII
// letters), matched as encoding/json matched a key to a field: escapes
// decoded, letters compared without regard to case, and the two non-ASCII
// letters Unicode folds to ASCII ones, ſ (U+017F) and the Kelvin sign
// (U+212A), taken as s and k.
func is(m *rawjson.Members, name string) bool {
	key := string(m.Key())
	if strings.IndexByte(key, '\\') >= 0 {
		key, _ = rawjson.Unquote([]byte(`"` + key + `"`))
	}
	j := 0
	for i := 0; i < len(key); j++ {
		c := key[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			i++
		} else {
			r, size := utf8.DecodeRuneInString(key[i:])
			switch r {
			case '\u017f': // ſ
				c = 's'
			case '\u212a': // Kelvin sign
				c = 'k'
			default:
				return false
			}
			i += size
		}
		if j >= len(name) || c != name[j] {
			return false
		}
	}
	return j == len(name)
}

// setString sets *dst to the string v and reports true; null leaves *dst
// as it is, and any other value is of the wrong type (false).
func setString(dst *string, v rawjson.Value) bool {
	switch v.Kind() {
	case rawjson.String:
		*dst = decode(v)
	case rawjson.Null:
	default:
		return false
	}
	return true
}

// decode returns the decoded string v with each byte of invalid UTF-8
// replaced by U+FFFD, as encoding/json decodes a string.
func decode(v rawjson.Value) string {
	s, _ := v.Str()
	if utf8.Valid(s) {
		return string(s)
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(b)
}

// typeError is the 400 for the value v where the request wants another
// type, with encoding/json's message.
func typeError(v rawjson.Value, into string) error {
	kind := ""
	switch v.Kind() {
	case rawjson.String:
		kind = "string"
	case rawjson.Number:
		kind = "number"
	case rawjson.Bool:
		kind = "bool"
	case rawjson.Array:
		kind = "array"
	case rawjson.Object:
		kind = "object"
	}
	return &sdk.HTTPError{Status: 400, Message: "demo: json: cannot unmarshal " + kind + " into " + into}
}

// appendString appends s as a JSON string literal escaped as encoding/json
// escapes it: rawjson.AppendString, but for <, > and &, written \u003c,
// \u003e and \u0026, and backspace and form feed, written \b and \f.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for {
		i := strings.IndexAny(s, "<>&\b\f")
		if i < 0 {
			break
		}
		b = appendContent(b, s[:i])
		switch s[i] {
		case '<':
			b = append(b, `\u003c`...)
		case '>':
			b = append(b, `\u003e`...)
		case '&':
			b = append(b, `\u0026`...)
		case '\b':
			b = append(b, `\b`...)
		case '\f':
			b = append(b, `\f`...)
		}
		s = s[i+1:]
	}
	b = appendContent(b, s)
	return append(b, '"')
}

// appendContent appends s as the content of a string literal, without its
// quotes.
func appendContent(b []byte, s string) []byte {
	n := len(b)
	b = rawjson.AppendString(b, s)
	return append(b[:n], b[n+1:len(b)-1]...)
}

func answer(s *sdk.Stream) (req chatRequest, reply string, promptTokens int, err error) {
	root, err := request(s)
	if err != nil {
		return req, "", 0, err
	}
	if req, err = readChat(root); err != nil {
		return req, "", 0, err
	}
	last := ""
	for _, m := range req.messages {
		t := text(m.content)
		promptTokens += len(strings.Fields(t))
		if m.role == "user" {
			last = t
		}
	}
	if strings.Contains(req.model, "story") {
		return req, story, max(promptTokens, 1), nil
	}
	return req, "You said: " + last, max(promptTokens, 1), nil
}

// usage is the usage object of an answer. (The tests decode it with the
// tags.)
type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func newUsage(prompt int, reply string) usage {
	n := len(strings.Fields(reply))
	return usage{prompt, n, prompt + n}
}

func (u usage) appendTo(b []byte) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(u.PromptTokens), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(u.CompletionTokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(u.TotalTokens), 10)
	return append(b, '}')
}

func id() string { return "chatcmpl-demo" + strconv.FormatInt(time.Now().UnixNano(), 36) }

func (plugin) Chat(s *sdk.Stream) error {
	req, reply, prompt, err := answer(s)
	if err != nil {
		return err
	}
	b := []byte(`{"choices":[{"finish_reason":"stop","index":0,"message":{"content":`)
	b = appendString(b, reply)
	b = append(b, `,"role":"assistant"}}],"created":`...)
	b = strconv.AppendInt(b, time.Now().Unix(), 10)
	b = append(b, `,"id":"`...)
	b = append(b, id()...) // letters and digits
	b = append(b, `","model":`...)
	b = appendString(b, req.model)
	b = append(b, `,"object":"chat.completion","usage":`...)
	b = newUsage(prompt, reply).appendTo(b)
	return s.EmitBody(append(b, '}'))
}

// wordDelay paces a story's words.
const wordDelay = 30 * time.Millisecond

// wordsPerCallback bounds the words an unpaced (echo) stream emits in one
// callback, so a long message cannot run a callback past its deadline: the
// rest follows in a timer callback of no delay.
const wordsPerCallback = 256

// teller is the state of one streamed answer, from the callback that starts
// it to the one that finishes it.
type teller struct {
	model   []byte // the model as a JSON string literal
	id      string
	created int64
	reply   string
	prompt  int
	words   []string
	next    int  // index of the next word to emit
	paced   bool // a story: one word per wordDelay
}

func (plugin) ChatStream(s *sdk.Stream) error {
	req, reply, prompt, err := answer(s)
	if err != nil {
		return err
	}
	t := &teller{
		model: appendString(nil, req.model), id: id(), created: time.Now().Unix(),
		reply: reply, prompt: prompt, words: strings.SplitAfter(reply, " "),
		paced: strings.Contains(req.model, "story"),
	}
	if err := t.chunk(s, []byte(`{"content":"","role":"assistant"}`), "null", nil); err != nil {
		return err
	}
	return t.step(s)
}

// chunk emits one chat.completion.chunk with the JSON delta and
// finish_reason given; with u set, the usage chunk.
func (t *teller) chunk(s *sdk.Stream, delta []byte, finish string, u *usage) error {
	b := make([]byte, 0, 160+len(delta)+len(t.model))
	if u == nil {
		b = append(b, `{"choices":[{"delta":`...)
		b = append(b, delta...)
		b = append(b, `,"finish_reason":`...)
		b = append(b, finish...)
		b = append(b, `,"index":0}],"created":`...)
	} else {
		b = append(b, `{"choices":[],"created":`...)
	}
	b = strconv.AppendInt(b, t.created, 10)
	b = append(b, `,"id":"`...)
	b = append(b, t.id...)
	b = append(b, `","model":`...)
	b = append(b, t.model...)
	b = append(b, `,"object":"chat.completion.chunk"`...)
	if u != nil {
		b = append(b, `,"usage":`...)
		b = u.appendTo(b)
	}
	return s.EmitChunk(append(b, '}'))
}

// step emits the next word and sets the timer for the one after it (a
// story), or emits a batch of words (an echo); after the last word it
// emits the finish and usage chunks and finishes the stream. It runs first
// from ChatStream, then from the stream's timer.
func (t *teller) step(s *sdk.Stream) error {
	for n := 0; t.next < len(t.words); n++ {
		if !t.paced && n == wordsPerCallback {
			return s.After(0, t.step)
		}
		w := t.words[t.next]
		t.next++
		delta := appendString([]byte(`{"content":`), w)
		if err := t.chunk(s, append(delta, '}'), "null", nil); err != nil {
			return err
		}
		if t.paced {
			return s.After(wordDelay, t.step) // show the tokens arriving
		}
	}
	if err := t.chunk(s, []byte(`{}`), `"stop"`, nil); err != nil {
		return err
	}
	u := newUsage(t.prompt, t.reply)
	if err := t.chunk(s, nil, "", &u); err != nil {
		return err
	}
	return s.Finish()
}

var errInput = &sdk.HTTPError{Status: 400, Message: "demo: input must be a string or an array of strings"}

func (plugin) Embeddings(s *sdk.Stream) error {
	root, err := request(s)
	if err != nil {
		return err
	}
	var model string
	var input rawjson.Value
	switch root.Kind() {
	case rawjson.Object, rawjson.Null:
	default:
		return typeError(root, "Go value of type "+embeddingsType)
	}
	for m := root.Members(); m.Next(); {
		switch {
		case is(&m, "model"):
			if !setString(&model, m.Value()) {
				return typeError(m.Value(), "Go struct field .model of type string")
			}
		case is(&m, "input"):
			input = m.Value()
		}
	}
	// A string, an array of strings (null in it is ""), or null: none.
	var inputs []string
	switch input.Kind() {
	case rawjson.String:
		inputs = []string{decode(input)}
	case rawjson.Array:
		for e := input.Elements(); e.Next(); {
			var in string
			if !setString(&in, e.Value()) {
				return errInput
			}
			inputs = append(inputs, in)
		}
	case rawjson.Null:
	default: // absent, or neither a string nor an array
		return errInput
	}
	b := []byte(`{"data":[`)
	tokens := 0
	for i, in := range inputs {
		tokens += len(strings.Fields(in))
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"embedding":[`...)
		for j := 0; j < 8; j++ {
			h := fnv.New32a()
			h.Write([]byte{byte(j)})
			h.Write([]byte(in))
			if j > 0 {
				b = append(b, ',')
			}
			// In [-1, 1) and a multiple of 0.001 away from 0: encoding/json
			// writes such a float64 in the 'f' format, shortest.
			b = strconv.AppendFloat(b, float64(h.Sum32()%2000)/1000-1, 'f', -1, 64)
		}
		b = append(b, `],"index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"object":"embedding"}`...)
	}
	b = append(b, `],"model":`...)
	b = appendString(b, model)
	b = append(b, `,"object":"list","usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(tokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(tokens), 10)
	return s.EmitBody(append(b, "}}"...))
}

func (plugin) Models(s *sdk.Stream) error {
	return s.EmitBody([]byte(`{"object":"list","data":[` +
		`{"id":"demo-echo","object":"model","created":0,"owned_by":"llm-proxy"},` +
		`{"id":"demo-story","object":"model","created":0,"owned_by":"llm-proxy"}]}`))
}

func init() { sdk.Register(plugin{}) }

func main() {}
