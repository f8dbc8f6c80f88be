package ingress

import (
	"strconv"

	"github.com/tidwall/gjson"
)

// OpenAI's Responses API (its stateless core) in front of any provider.
// The request maps onto a chat completion request like this:
//
//	instructions                          a first "system" message
//	input string                          one user message
//	input message items                   messages; developer becomes system;
//	  input_text, output_text, refusal    text
//	  input_image (image_url)             an image_url part (detail kept)
//	  input_file (file_data)              a file part
//	function_call items                   tool_calls of one assistant message
//	                                      (with the assistant text before them)
//	function_call_output items            "tool" messages
//	reasoning items                       dropped
//	tools (function)                      function tools
//	tool_choice                           the same; {"type":"function","name"} as chat's
//	max_output_tokens                     max_completion_tokens
//	temperature, top_p,
//	parallel_tool_calls                   the same
//	text.format json_schema / json_object response_format
//	user, safety_identifier               user
//	stream                                stream, with usage requested
//
// Refused with a 400: built-in tools (web search, file search, computer
// use ...), input given by file_id or item_reference, conversation, and
// background. previous_response_id is served by the caller, which keeps
// responses: it passes the conversation so far to ParseResponses.

// ResponsesRequest is a /v1/responses request as the proxy needs it.
type ResponsesRequest struct {
	Model  string
	Stream bool
	// Store: the client did not say "store": false.
	Store bool
	// PreviousID is previous_response_id, "" without one.
	PreviousID string
	// Chat is the unified request.
	Chat []byte
	// Conversation is the messages of Chat without the instructions: what
	// a response continued later starts from.
	Conversation []byte
	top          members
}

// PreviousID reads a Responses API request's previous_response_id: "" if
// it has none, and false if it is not a string.
func PreviousID(root gjson.Result) (string, bool) {
	v := root.Get("previous_response_id")
	if !v.Exists() || v.Type == gjson.Null {
		return "", true
	}
	return v.Str, isString(v) && v.Str != ""
}

// ParseResponses checks a Responses API request (root, an object) and
// translates it; previous is the conversation of the response it
// continues (StoredMessages), "" if none.
func ParseResponses(root gjson.Result, previous string) (*ResponsesRequest, *BadRequest) {
	top := readMembers(root)
	r := &ResponsesRequest{Model: top.get("model").Str, top: top, Store: top.get("store").Type != gjson.False}
	id, ok := PreviousID(root)
	if !ok {
		return nil, bad("previous_response_id", "Invalid 'previous_response_id': expected a response id.")
	}
	r.PreviousID = id
	if st := top.get("stream"); st.Exists() {
		if st.Type != gjson.True && st.Type != gjson.False && st.Type != gjson.Null {
			return nil, bad("stream", "Invalid type for 'stream': expected a boolean.")
		}
		r.Stream = st.Type == gjson.True
	}
	if v := top.get("conversation"); v.Exists() && v.Type != gjson.Null {
		return nil, unsupported("conversation", "'conversation' is not supported by this proxy: continue a response with 'previous_response_id', or send the whole conversation in 'input'.")
	}
	if bg := top.get("background"); bg.Type == gjson.True {
		return nil, unsupported("background", "Background responses are not supported by this proxy.")
	}
	b := make([]byte, 0, len(root.Raw)+128)
	b = append(b, `{"model":`...)
	b = append(b, top.get("model").Raw...)
	b = append(b, `,"messages":[`...)
	w := msgWriter{b: b}
	if ins := top.get("instructions"); isString(ins) {
		w.sep()
		w.b = append(w.b, `{"role":"system","content":`...)
		w.b = append(w.b, ins.Raw...)
		w.b = append(w.b, '}')
	} else if ins.Exists() && ins.Type != gjson.Null {
		return nil, bad("instructions", "Invalid type for 'instructions': expected a string.")
	}
	conv := len(w.b)
	if previous != "" {
		w.sep()
		w.b = append(w.b, previous...)
	}
	in := top.get("input")
	switch {
	case isString(in):
		w.sep()
		w.b = append(w.b, `{"role":"user","content":`...)
		w.b = append(w.b, in.Raw...)
		w.b = append(w.b, '}')
	case in.IsArray():
		var err *BadRequest
		in.ForEach(func(k, item gjson.Result) bool {
			err = w.item(item, "input["+index(k)+"]")
			return err == nil
		})
		if err != nil {
			return nil, err
		}
		w.flush()
	default:
		return nil, bad("input", "Missing required parameter: 'input'.")
	}
	if w.n == 0 {
		return nil, bad("input", "'input' must hold at least one message.")
	}
	r.Conversation = w.b[conv:]
	if len(r.Conversation) > 0 && r.Conversation[0] == ',' {
		r.Conversation = r.Conversation[1:]
	}
	b = append(w.b, ']')
	if v := top.get("max_output_tokens"); v.Exists() && v.Type != gjson.Null {
		if !isNumber(v) || v.Int() < 1 {
			return nil, bad("max_output_tokens", "Invalid 'max_output_tokens': expected a positive integer.")
		}
		b = append(b, `,"max_completion_tokens":`...)
		b = append(b, v.Raw...)
	}
	for _, name := range [...]string{"temperature", "top_p"} {
		if v := top.get(name); v.Exists() && v.Type != gjson.Null {
			if !isNumber(v) {
				return nil, bad(name, "Invalid type for '"+name+"': expected a number.")
			}
			b = append(b, `,"`...)
			b = append(b, name...)
			b = append(b, `":`...)
			b = append(b, v.Raw...)
		}
	}
	if v := top.get("parallel_tool_calls"); v.Type == gjson.True || v.Type == gjson.False {
		b = append(b, `,"parallel_tool_calls":`...)
		b = append(b, v.Raw...)
	}
	if u := top.get("user"); isString(u) {
		b = append(b, `,"user":`...)
		b = append(b, u.Raw...)
	} else if u := top.get("safety_identifier"); isString(u) {
		b = append(b, `,"user":`...)
		b = append(b, u.Raw...)
	}
	var err *BadRequest
	if b, err = responsesTools(b, top); err != nil {
		return nil, err
	}
	f := top.get("text").Get("format")
	switch f.Get("type").Str {
	case "", "text":
	case "json_object":
		b = append(b, `,"response_format":{"type":"json_object"}`...)
	case "json_schema":
		name, schema := f.Get("name"), f.Get("schema")
		if !isString(name) || !schema.IsObject() {
			return nil, bad("text.format", "A json_schema text format needs a 'name' and a 'schema'.")
		}
		b = append(b, `,"response_format":{"type":"json_schema","json_schema":{"name":`...)
		b = append(b, name.Raw...)
		b = append(b, `,"schema":`...)
		b = append(b, schema.Raw...)
		if d := f.Get("description"); isString(d) {
			b = append(b, `,"description":`...)
			b = append(b, d.Raw...)
		}
		if s := f.Get("strict"); s.Type == gjson.True || s.Type == gjson.False {
			b = append(b, `,"strict":`...)
			b = append(b, s.Raw...)
		}
		b = append(b, `}}`...)
	default:
		return nil, bad("text.format.type", "Invalid 'text.format.type': expected text, json_object or json_schema.")
	}
	if r.Stream {
		b = append(b, `,"stream":true,"stream_options":{"include_usage":true}`...)
	}
	r.Chat = append(b, '}')
	return r, nil
}

// msgWriter appends chat messages; an assistant message is held open so
// that function_call items after it join its tool_calls.
type msgWriter struct {
	b         []byte
	n         int
	text      []byte // the held assistant message's text
	calls     []byte // and its tool calls
	assistant bool
}

func (w *msgWriter) sep() {
	if w.n > 0 {
		w.b = append(w.b, ',')
	}
	w.n++
}

// flush writes the held assistant message.
func (w *msgWriter) flush() {
	if !w.assistant {
		return
	}
	w.assistant = false
	w.sep()
	w.b = appendAssistant(w.b, w.text, w.calls)
	w.text, w.calls = w.text[:0], w.calls[:0]
}

func (w *msgWriter) item(item gjson.Result, param string) *BadRequest {
	typ := item.Get("type").Str
	if typ == "" && item.Get("role").Exists() {
		typ = "message"
	}
	switch typ {
	case "message":
		role := item.Get("role").Str
		content := item.Get("content")
		switch role {
		case "assistant":
			w.flush()
			w.assistant = true
			switch {
			case isString(content):
				w.text = append(w.text, inner(content.Raw)...)
			case content.IsArray():
				content.ForEach(func(_, p gjson.Result) bool {
					switch p.Get("type").Str {
					case "output_text", "input_text", "text":
						w.text = append(w.text, inner(p.Get("text").Raw)...)
					case "refusal":
						w.text = append(w.text, inner(p.Get("refusal").Raw)...)
					}
					return true
				})
			}
			return nil
		case "user", "system", "developer":
		default:
			return bad(param+".role", "Invalid value for '"+param+".role': expected user, assistant, system or developer.")
		}
		w.flush()
		if role == "developer" {
			role = "system"
		}
		if isString(content) {
			w.sep()
			w.b = append(w.b, `{"role":"`...)
			w.b = append(w.b, role...)
			w.b = append(w.b, `","content":`...)
			w.b = append(w.b, content.Raw...)
			w.b = append(w.b, '}')
			return nil
		}
		if !content.IsArray() {
			return bad(param+".content", "Invalid type for '"+param+".content': expected a string or an array of content parts.")
		}
		var parts []byte
		var err *BadRequest
		content.ForEach(func(k, p gjson.Result) bool {
			pp := param + ".content[" + index(k) + "]"
			if len(parts) > 0 {
				parts = append(parts, ',')
			}
			switch pt := p.Get("type").Str; pt {
			case "input_text", "output_text", "text":
				parts = append(parts, `{"type":"text","text":`...)
				parts = appendRawOr(parts, p.Get("text"), `""`)
				parts = append(parts, '}')
			case "input_image":
				u := p.Get("image_url")
				if !isString(u) {
					err = unsupported(pp+".image_url", "An input_image must give 'image_url' (file_id is not supported by this proxy).")
					return false
				}
				parts = append(parts, `{"type":"image_url","image_url":{"url":`...)
				parts = append(parts, u.Raw...)
				if d := p.Get("detail"); isString(d) {
					parts = append(parts, `,"detail":`...)
					parts = append(parts, d.Raw...)
				}
				parts = append(parts, `}}`...)
			case "input_file":
				d := p.Get("file_data")
				if !isString(d) {
					err = unsupported(pp+".file_data", "An input_file must give 'file_data' (file_id and file_url are not supported by this proxy).")
					return false
				}
				parts = append(parts, `{"type":"file","file":{"file_data":`...)
				parts = append(parts, d.Raw...)
				if f := p.Get("filename"); isString(f) {
					parts = append(parts, `,"filename":`...)
					parts = append(parts, f.Raw...)
				}
				parts = append(parts, `}}`...)
			default:
				err = unsupported(pp+".type", "The content part type '"+pt+"' is not supported by this proxy.")
				return false
			}
			return true
		})
		if err != nil {
			return err
		}
		w.sep()
		w.b = append(w.b, `{"role":"`...)
		w.b = append(w.b, role...)
		if role == "system" {
			// System messages carry text parts only: joined.
			w.b = append(w.b, `","content":"`...)
			content.ForEach(func(_, p gjson.Result) bool {
				w.b = append(w.b, inner(p.Get("text").Raw)...)
				return true
			})
			w.b = append(w.b, `"}`...)
			return nil
		}
		w.b = append(w.b, `","content":[`...)
		w.b = append(w.b, parts...)
		w.b = append(w.b, `]}`...)
	case "function_call":
		id, name, args := item.Get("call_id"), item.Get("name"), item.Get("arguments")
		if !isString(id) || !isString(name) {
			return bad(param, "A function_call item needs 'call_id' and 'name'.")
		}
		w.assistant = true
		if len(w.calls) > 0 {
			w.calls = append(w.calls, ',')
		}
		w.calls = append(w.calls, `{"id":`...)
		w.calls = append(w.calls, id.Raw...)
		w.calls = append(w.calls, `,"type":"function","function":{"name":`...)
		w.calls = append(w.calls, name.Raw...)
		w.calls = append(w.calls, `,"arguments":`...)
		w.calls = appendRawOr(w.calls, args, `"{}"`)
		w.calls = append(w.calls, `}}`...)
	case "function_call_output":
		id, out := item.Get("call_id"), item.Get("output")
		if !isString(id) {
			return bad(param+".call_id", "A function_call_output item needs 'call_id'.")
		}
		w.flush()
		w.sep()
		w.b = append(w.b, `{"role":"tool","tool_call_id":`...)
		w.b = append(w.b, id.Raw...)
		w.b = append(w.b, `,"content":`...)
		switch {
		case isString(out):
			w.b = append(w.b, out.Raw...)
		case out.IsArray():
			w.b = append(w.b, '"')
			out.ForEach(func(_, p gjson.Result) bool {
				w.b = append(w.b, inner(p.Get("text").Raw)...)
				return true
			})
			w.b = append(w.b, '"')
		default:
			w.b = append(w.b, `""`...)
		}
		w.b = append(w.b, '}')
	case "reasoning":
	default:
		return unsupported(param+".type", "The input item type '"+typ+"' is not supported by this proxy.")
	}
	return nil
}

// responsesTools appends tools and tool_choice.
func responsesTools(b []byte, top members) ([]byte, *BadRequest) {
	var err *BadRequest
	if tools := top.get("tools"); nonEmptyArray(tools) {
		b = append(b, `,"tools":[`...)
		tools.ForEach(func(k, t gjson.Result) bool {
			param := "tools[" + index(k) + "]"
			if typ := t.Get("type").Str; typ != "function" {
				err = unsupported(param+".type", "The tool type '"+typ+"' is not supported by this proxy; only function tools are.")
				return false
			}
			name := t.Get("name")
			if !isString(name) {
				err = bad(param+".name", "Missing required parameter: '"+param+".name'.")
				return false
			}
			if k.Int() > 0 {
				b = append(b, ',')
			}
			b = appendFunctionTool(b, name, t.Get("description"), t.Get("parameters"), `{"type":"object","properties":{}}`, t.Get("strict"))
			return true
		})
		if err != nil {
			return b, err
		}
		b = append(b, ']')
	}
	tc := top.get("tool_choice")
	switch {
	case !tc.Exists() || tc.Type == gjson.Null:
	case isString(tc):
		if tc.Str != "auto" && tc.Str != "none" && tc.Str != "required" {
			return b, bad("tool_choice", "Invalid 'tool_choice': expected auto, none or required.")
		}
		b = append(b, `,"tool_choice":`...)
		b = append(b, tc.Raw...)
	case tc.Get("type").Str == "function" && isString(tc.Get("name")):
		b = append(b, `,"tool_choice":{"type":"function","function":{"name":`...)
		b = append(b, tc.Get("name").Raw...)
		b = append(b, `}}`...)
	default:
		return b, unsupported("tool_choice", "Only auto, none, required and a function tool_choice are supported by this proxy.")
	}
	return b, nil
}

// Responses builds the Response objects of one request.
type Responses struct {
	ID, Model string
	Created   int64
	// Stored says the response is kept: its "store" is true.
	Stored     bool
	previousID string
	req        members
}

// NewResponses prepares the answers to req; id is the response's id, and
// stored whether it will be kept.
func NewResponses(req *ResponsesRequest, id string, created int64, stored bool) *Responses {
	return &Responses{ID: id, Model: req.Model, Created: created, Stored: stored, previousID: req.PreviousID, req: req.top}
}

// appendResponse writes a Response object with the given status, output
// items (already JSON, comma-separated) and usage (nil: null).
func (x *Responses) appendResponse(b []byte, status string, incomplete string, output []byte, u *Usage) []byte {
	q := x.req
	b = append(b, `{"id":`...)
	b = appendStr(b, x.ID)
	b = append(b, `,"object":"response","created_at":`...)
	b = appendInt(b, x.Created)
	b = append(b, `,"status":"`...)
	b = append(b, status...)
	b = append(b, `","background":false,"error":null,"incomplete_details":`...)
	if incomplete != "" {
		b = append(b, `{"reason":"`...)
		b = append(b, incomplete...)
		b = append(b, `"}`...)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"instructions":`...)
	b = appendRawOr(b, q.get("instructions"), "null")
	b = append(b, `,"max_output_tokens":`...)
	b = appendRawOr(b, q.get("max_output_tokens"), "null")
	b = append(b, `,"metadata":`...)
	b = appendRawOr(b, q.get("metadata"), "{}")
	b = append(b, `,"model":`...)
	b = appendStr(b, x.Model)
	b = append(b, `,"output":[`...)
	b = append(b, output...)
	b = append(b, `],"parallel_tool_calls":`...)
	b = appendRawOr(b, q.get("parallel_tool_calls"), "true")
	b = append(b, `,"previous_response_id":`...)
	if x.previousID != "" {
		b = appendStr(b, x.previousID)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"reasoning":{"effort":null,"summary":null},"store":`...)
	b = strconv.AppendBool(b, x.Stored)
	b = append(b, `,"temperature":`...)
	b = appendRawOr(b, q.get("temperature"), "1")
	b = append(b, `,"text":{"format":`...)
	b = appendRawOr(b, q.get("text").Get("format"), `{"type":"text"}`)
	b = append(b, `},"tool_choice":`...)
	b = appendRawOr(b, q.get("tool_choice"), `"auto"`)
	b = append(b, `,"tools":`...)
	b = appendRawOr(b, q.get("tools"), "[]")
	b = append(b, `,"top_p":`...)
	b = appendRawOr(b, q.get("top_p"), "1")
	b = append(b, `,"truncation":"disabled","usage":`...)
	if u == nil || !u.Known {
		b = append(b, "null"...)
	} else {
		b = appendResponsesUsage(b, *u)
	}
	if uu := q.get("user"); isString(uu) {
		b = append(b, `,"user":`...)
		b = append(b, uu.Raw...)
	}
	return append(b, '}')
}

func appendResponsesUsage(b []byte, u Usage) []byte {
	b = append(b, `{"input_tokens":`...)
	b = appendInt(b, u.Prompt)
	b = append(b, `,"input_tokens_details":{"cached_tokens":`...)
	b = appendInt(b, u.Cached)
	b = append(b, `},"output_tokens":`...)
	b = appendInt(b, u.Completion)
	b = append(b, `,"output_tokens_details":{"reasoning_tokens":`...)
	b = appendInt(b, u.Reasoning)
	b = append(b, `},"total_tokens":`...)
	b = appendInt(b, u.Prompt+u.Completion)
	return append(b, '}')
}

// incompleteReason is the incomplete_details reason of a chat finish_reason,
// "" for a complete answer.
func incompleteReason(finish string) string {
	switch finish {
	case "length":
		return "max_output_tokens"
	case "content_filter":
		return "content_filter"
	}
	return ""
}

func statusOf(incomplete string) string {
	if incomplete != "" {
		return "incomplete"
	}
	return "completed"
}

// appendMessageItem writes an output message item holding text (a JSON
// string's content, escaped).
func appendMessageItem(b []byte, id, status string, text []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendStr(b, id)
	b = append(b, `,"type":"message","status":"`...)
	b = append(b, status...)
	b = append(b, `","role":"assistant","content":[{"type":"output_text","annotations":[],"logprobs":[],"text":"`...)
	b = append(b, text...)
	return append(b, `"}]}`...)
}

// appendCallItem writes a function_call output item; callID and name are
// JSON strings as they came, args a string's escaped content.
func appendCallItem(b []byte, id, status, callID, name string, args []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendStr(b, id)
	b = append(b, `,"type":"function_call","status":"`...)
	b = append(b, status...)
	b = append(b, `","arguments":"`...)
	b = append(b, args...)
	b = append(b, `","call_id":`...)
	b = append(b, callID...)
	b = append(b, `,"name":`...)
	b = append(b, name...)
	return append(b, '}')
}

// FromChat translates a chat.completion into the Response object.
func (x *Responses) FromChat(chat []byte) ([]byte, Usage) {
	c := gjson.ParseBytes(chat)
	var u Usage
	if uo := c.Get("usage"); uo.IsObject() {
		u = readChatUsage(uo)
	}
	msg := c.Get("choices.0.message")
	var out []byte
	if t := msg.Get("content"); isString(t) && t.Str != "" {
		out = appendMessageItem(out, "msg_"+x.ID[len("resp_"):], "completed", []byte(inner(t.Raw)))
	}
	n := 0
	msg.Get("tool_calls").ForEach(func(_, tc gjson.Result) bool {
		if len(out) > 0 {
			out = append(out, ',')
		}
		n++
		callID := tc.Get("id").Raw
		if !isString(tc.Get("id")) {
			callID = `"call_` + strconv.Itoa(n) + `"`
		}
		out = appendCallItem(out, x.fcID(n), "completed", callID, orRaw(tc.Get("function.name"), `""`),
			[]byte(inner(orRaw(tc.Get("function.arguments"), `""`))))
		return true
	})
	inc := incompleteReason(c.Get("choices.0.finish_reason").Str)
	return x.appendResponse(make([]byte, 0, len(chat)+512), statusOf(inc), inc, out, &u), u
}

func (x *Responses) fcID(n int) string { return "fc_" + x.ID[len("resp_"):] + "_" + strconv.Itoa(n) }

func orRaw(v gjson.Result, def string) string {
	if isString(v) {
		return v.Raw
	}
	return def
}

// AssistantMessage is a chat completion's answer as the assistant message
// of a later request: its text and tool calls, nothing else.
func AssistantMessage(chat []byte) []byte {
	msg := gjson.GetBytes(chat, "choices.0.message")
	var text, calls []byte
	if t := msg.Get("content"); isString(t) {
		text = []byte(inner(t.Raw))
	}
	n := 0
	msg.Get("tool_calls").ForEach(func(_, tc gjson.Result) bool {
		n++
		calls = appendChatCall(calls, orRaw(tc.Get("id"), `"call_`+strconv.Itoa(n)+`"`), orRaw(tc.Get("function.name"), `""`),
			[]byte(inner(orRaw(tc.Get("function.arguments"), `""`))))
		return true
	})
	return appendAssistant(nil, text, calls)
}

// appendChatCall appends a tool_calls entry; id and name are JSON strings,
// args a string's escaped content.
func appendChatCall(b []byte, id, name string, args []byte) []byte {
	if len(b) > 0 {
		b = append(b, ',')
	}
	b = append(b, `{"id":`...)
	b = append(b, id...)
	b = append(b, `,"type":"function","function":{"name":`...)
	b = append(b, name...)
	b = append(b, `,"arguments":"`...)
	b = append(b, args...)
	return append(b, `"}}`...)
}

// appendAssistant appends an assistant message: text is escaped string
// content, calls comma-separated tool_calls entries.
func appendAssistant(b, text, calls []byte) []byte {
	b = append(b, `{"role":"assistant","content":`...)
	if len(text) > 0 || len(calls) == 0 {
		b = append(b, '"')
		b = append(b, text...)
		b = append(b, '"')
	} else {
		b = append(b, "null"...)
	}
	if len(calls) > 0 {
		b = append(b, `,"tool_calls":[`...)
		b = append(b, calls...)
		b = append(b, ']')
	}
	return append(b, '}')
}
