package ingress

import (
	"strconv"

	"github.com/tidwall/gjson"
)

// Anthropic's Messages API in front of any provider. The request maps onto
// a chat completion request like this:
//
//	system (string or text blocks)        a first "system" message
//	messages[].content string             the same message
//	  text block                          a text part (user) or text (assistant)
//	  image block, base64 / url source    an image_url part, data: URL / the URL
//	  document block, base64 PDF          a file part (file_data as a data: URL)
//	  document block, text / content      a text part
//	  tool_use block (assistant)          an entry of tool_calls, input as arguments
//	  tool_result block (user)            a "tool" message before the user's own;
//	                                      its images go into the user message
//	  thinking, redacted_thinking         dropped: no chat request carries them
//	max_tokens                            max_completion_tokens
//	stop_sequences                        stop
//	temperature, top_p                    the same
//	metadata.user_id                      user
//	tools (custom tools)                  function tools; input_schema as parameters
//	tool_choice auto / any / tool / none  "auto" / "required" / the function / "none"
//	  disable_parallel_tool_use           parallel_tool_calls: false
//	stream                                stream, with usage requested
//
// Not mapped, because a chat completion request cannot say it: top_k,
// thinking, cache_control markers, citations, document URLs and server
// tools (web search, code execution ...; refused with a 400). An Anthropic
// provider gets the request unchanged instead (the "messages" operation),
// and none of this is lost.

// MessagesRequest is a /v1/messages request as the proxy needs it.
type MessagesRequest struct {
	Model  string
	Stream bool
	// Chat is the unified request; nil when the request holds what a chat
	// request cannot say, and Untranslatable says what. Such a request can
	// still go to an Anthropic provider unchanged.
	Chat           []byte
	Untranslatable *BadRequest
}

// ParseMessages checks a Messages API request (root, an object) and
// translates it. A request to count tokens has no max_tokens.
func ParseMessages(root gjson.Result, counting bool) (*MessagesRequest, *BadRequest) {
	top := readMembers(root)
	m := &MessagesRequest{Model: top.get("model").Str}
	mt := top.get("max_tokens")
	switch {
	case counting:
		mt = gjson.Result{}
	case !mt.Exists():
		return nil, bad("max_tokens", "max_tokens: Field required")
	case !isNumber(mt) || mt.Int() < 1 || float64(mt.Int()) != mt.Num:
		return nil, bad("max_tokens", "max_tokens: must be a positive integer")
	}
	if !nonEmptyArray(top.get("messages")) {
		return nil, bad("messages", "messages: must be a non-empty array")
	}
	if st := top.get("stream"); st.Exists() {
		if st.Type != gjson.True && st.Type != gjson.False && st.Type != gjson.Null {
			return nil, bad("stream", "stream: must be a boolean")
		}
		m.Stream = st.Type == gjson.True
	}
	m.Chat, m.Untranslatable = messagesToChat(top, len(root.Raw), mt, m.Stream)
	return m, nil
}

// messagesToChat makes the unified request of a checked Messages request.
func messagesToChat(top members, size int, mt gjson.Result, stream bool) ([]byte, *BadRequest) {
	b := make([]byte, 0, size+128)
	b = append(b, `{"model":`...)
	b = append(b, top.get("model").Raw...)
	b = append(b, `,"messages":[`...)
	n := 0
	sep := func() {
		if n > 0 {
			b = append(b, ',')
		}
		n++
	}
	sys := top.get("system")
	switch {
	case isString(sys):
		sep()
		b = append(b, `{"role":"system","content":`...)
		b = append(b, sys.Raw...)
		b = append(b, '}')
	case sys.IsArray():
		text, err := joinText(sys, "system")
		if err != nil {
			return nil, err
		}
		sep()
		b = append(b, `{"role":"system","content":"`...)
		b = append(b, text...)
		b = append(b, `"}`...)
	case sys.Exists() && sys.Type != gjson.Null:
		return nil, bad("system", "system: must be a string or an array of text blocks")
	}
	var err *BadRequest
	var user, texts []byte
	top.get("messages").ForEach(func(k, msg gjson.Result) bool {
		param := "messages." + index(k)
		role := msg.Get("role")
		if role.Str != "user" && role.Str != "assistant" {
			err = bad(param+".role", param+".role: must be \"user\" or \"assistant\"")
			return false
		}
		content := msg.Get("content")
		if isString(content) {
			sep()
			b = append(b, `{"role":"`...)
			b = append(b, role.Str...)
			b = append(b, `","content":`...)
			b = append(b, content.Raw...)
			b = append(b, '}')
			return true
		}
		if !content.IsArray() {
			err = bad(param+".content", param+".content: must be a string or an array of content blocks")
			return false
		}
		if role.Str == "assistant" {
			var msg []byte
			if msg, err = assistantMessage(content, param+".content"); len(msg) > 0 {
				sep()
				b = append(b, msg...)
			}
			return err == nil
		}
		// A user message: tool results first, each a "tool" message, then
		// the rest as one user message.
		user, texts = user[:0], texts[:0]
		content.ForEach(func(i, blk gjson.Result) bool {
			bp := param + ".content." + index(i)
			switch typ := blk.Get("type").Str; typ {
			case "tool_result":
				id := blk.Get("tool_use_id")
				if !isString(id) {
					err = bad(bp+".tool_use_id", bp+".tool_use_id: Field required")
					return false
				}
				sep()
				b = append(b, `{"role":"tool","tool_call_id":`...)
				b = append(b, id.Raw...)
				b = append(b, `,"content":`...)
				c := blk.Get("content")
				switch {
				case isString(c):
					b = append(b, c.Raw...)
				case c.IsArray():
					b = append(b, '"')
					c.ForEach(func(j, part gjson.Result) bool {
						switch part.Get("type").Str {
						case "text":
							b = append(b, inner(part.Get("text").Raw)...)
						case "image":
							// Tool messages carry text only: the image goes
							// with the user's message.
							if user, err = appendBlock(user, part, bp+".content."+index(j)); err != nil {
								return false
							}
						}
						return true
					})
					b = append(b, '"')
				default:
					b = append(b, `""`...)
				}
				b = append(b, '}')
			case "thinking", "redacted_thinking":
			default:
				user, err = appendBlock(user, blk, bp)
			}
			return err == nil
		})
		if err != nil {
			return false
		}
		if len(user) > 0 {
			sep()
			b = append(b, `{"role":"user","content":[`...)
			b = append(b, user...)
			b = append(b, `]}`...)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	b = append(b, ']')
	if mt.Exists() {
		b = append(b, `,"max_completion_tokens":`...)
		b = append(b, mt.Raw...)
	}
	if ss := top.get("stop_sequences"); nonEmptyArray(ss) {
		b = append(b, `,"stop":`...)
		b = append(b, ss.Raw...)
	}
	for _, name := range [...]string{"temperature", "top_p"} {
		if v := top.get(name); v.Exists() && v.Type != gjson.Null {
			if !isNumber(v) {
				return nil, bad(name, name+": must be a number")
			}
			b = append(b, `,"`...)
			b = append(b, name...)
			b = append(b, `":`...)
			b = append(b, v.Raw...)
		}
	}
	if u := top.get("metadata").Get("user_id"); isString(u) {
		b = append(b, `,"user":`...)
		b = append(b, u.Raw...)
	}
	if b, err = messagesTools(b, top); err != nil {
		return nil, err
	}
	if stream {
		b = append(b, `,"stream":true,"stream_options":{"include_usage":true}`...)
	}
	return append(b, '}'), nil
}

// joinText joins the text of an array of text blocks, as string content.
func joinText(blocks gjson.Result, param string) ([]byte, *BadRequest) {
	var out []byte
	var err *BadRequest
	blocks.ForEach(func(i, blk gjson.Result) bool {
		if blk.Get("type").Str != "text" || !isString(blk.Get("text")) {
			err = bad(param+"."+index(i), param+"."+index(i)+": must be a text block")
			return false
		}
		out = append(out, inner(blk.Get("text").Raw)...)
		return true
	})
	return out, err
}

// appendBlock appends a user content block as a chat content part.
func appendBlock(b []byte, blk gjson.Result, param string) ([]byte, *BadRequest) {
	if len(b) > 0 {
		b = append(b, ',')
	}
	switch typ := blk.Get("type").Str; typ {
	case "text":
		t := blk.Get("text")
		if !isString(t) {
			return b, bad(param+".text", param+".text: Field required")
		}
		b = append(b, `{"type":"text","text":`...)
		return append(append(b, t.Raw...), '}'), nil
	case "image":
		src := blk.Get("source")
		switch src.Get("type").Str {
		case "base64":
			mt, data, err := base64Source(src, param)
			if err != nil {
				return b, err
			}
			b = append(b, `{"type":"image_url","image_url":{"url":`...)
			return append(appendDataURL(b, mt, data), `}}`...), nil
		case "url":
			u := src.Get("url")
			if !isString(u) {
				return b, bad(param+".source.url", param+".source.url: Field required")
			}
			b = append(b, `{"type":"image_url","image_url":{"url":`...)
			b = append(b, u.Raw...)
			return append(b, `}}`...), nil
		}
		return b, bad(param+".source.type", param+".source.type: must be \"base64\" or \"url\"")
	case "document":
		src := blk.Get("source")
		switch src.Get("type").Str {
		case "base64":
			mt, data, err := base64Source(src, param)
			if err != nil {
				return b, err
			}
			b = append(b, `{"type":"file","file":{"filename":`...)
			if t := blk.Get("title"); isString(t) {
				b = append(b, t.Raw...)
			} else {
				b = append(b, `"document.pdf"`...)
			}
			b = append(b, `,"file_data":`...)
			return append(appendDataURL(b, mt, data), `}}`...), nil
		case "text":
			d := src.Get("data")
			if !isString(d) {
				return b, bad(param+".source.data", param+".source.data: Field required")
			}
			b = append(b, `{"type":"text","text":`...)
			return append(append(b, d.Raw...), '}'), nil
		case "content":
			text, err := joinText(src.Get("content"), param+".source.content")
			if err != nil {
				return b, err
			}
			b = append(b, `{"type":"text","text":"`...)
			b = append(b, text...)
			return append(b, `"}`...), nil
		}
		return b, unsupported(param+".source.type", param+".source.type: only base64, text and content documents can be sent to this model's provider")
	}
	return b, unsupported(param+".type", param+".type: the content block type '"+blk.Get("type").Str+"' cannot be sent to this model's provider")
}

// base64Source reads a base64 source's media type and data.
func base64Source(src gjson.Result, param string) (mediaType, data gjson.Result, err *BadRequest) {
	mediaType, data = src.Get("media_type"), src.Get("data")
	if !isString(mediaType) || !isString(data) {
		return mediaType, data, bad(param+".source", param+".source: media_type and data are required")
	}
	return mediaType, data, nil
}

// appendDataURL writes a base64 source as a data: URL string; mediaType
// and data are JSON strings.
func appendDataURL(b []byte, mediaType, data gjson.Result) []byte {
	b = append(b, `"data:`...)
	b = append(b, inner(mediaType.Raw)...)
	b = append(b, ";base64,"...)
	b = append(b, inner(data.Raw)...)
	return append(b, '"')
}

// appendFunctionTool writes a chat function tool; parameters absent get
// def, strict is copied when it is a boolean.
func appendFunctionTool(b []byte, name, description, parameters gjson.Result, def string, strict gjson.Result) []byte {
	b = append(b, `{"type":"function","function":{"name":`...)
	b = append(b, name.Raw...)
	if isString(description) {
		b = append(b, `,"description":`...)
		b = append(b, description.Raw...)
	}
	b = append(b, `,"parameters":`...)
	b = appendRawOr(b, parameters, def)
	if strict.Type == gjson.True || strict.Type == gjson.False {
		b = append(b, `,"strict":`...)
		b = append(b, strict.Raw...)
	}
	return append(b, `}}`...)
}

// assistantMessage is an assistant message given as content blocks: text
// joined, tool_use blocks as tool_calls; nil when nothing is left of it.
func assistantMessage(content gjson.Result, param string) ([]byte, *BadRequest) {
	var text, calls []byte
	var err *BadRequest
	content.ForEach(func(i, blk gjson.Result) bool {
		bp := param + "." + index(i)
		switch blk.Get("type").Str {
		case "text":
			text = append(text, inner(blk.Get("text").Raw)...)
		case "tool_use":
			id, name, input := blk.Get("id"), blk.Get("name"), blk.Get("input")
			if !isString(id) || !isString(name) {
				err = bad(bp, bp+": id and name are required")
				return false
			}
			if len(calls) > 0 {
				calls = append(calls, ',')
			}
			calls = append(calls, `{"id":`...)
			calls = append(calls, id.Raw...)
			calls = append(calls, `,"type":"function","function":{"name":`...)
			calls = append(calls, name.Raw...)
			calls = append(calls, `,"arguments":`...)
			if input.IsObject() {
				calls = appendStr(calls, input.Raw)
			} else {
				calls = append(calls, `"{}"`...)
			}
			calls = append(calls, `}}`...)
		case "thinking", "redacted_thinking", "server_tool_use", "web_search_tool_result":
			// Reasoning and server tools of an earlier turn: only an
			// Anthropic upstream could read them.
		default:
			err = unsupported(bp+".type", bp+".type: the content block type '"+blk.Get("type").Str+"' cannot be sent to this model's provider")
			return false
		}
		return true
	})
	if err != nil || len(text) == 0 && len(calls) == 0 {
		return nil, err
	}
	return appendAssistant(make([]byte, 0, len(text)+len(calls)+64), text, calls), nil
}

// messagesTools appends tools, tool_choice and parallel_tool_calls.
func messagesTools(b []byte, top members) ([]byte, *BadRequest) {
	tools := top.get("tools")
	var err *BadRequest
	if nonEmptyArray(tools) {
		b = append(b, `,"tools":[`...)
		tools.ForEach(func(i, t gjson.Result) bool {
			param := "tools." + index(i)
			if typ := t.Get("type").Str; typ != "" && typ != "custom" {
				err = unsupported(param+".type", param+".type: the server tool '"+typ+"' is only served by Anthropic providers")
				return false
			}
			name := t.Get("name")
			if !isString(name) {
				err = bad(param+".name", param+".name: Field required")
				return false
			}
			if i.Int() > 0 {
				b = append(b, ',')
			}
			b = appendFunctionTool(b, name, t.Get("description"), t.Get("input_schema"), `{"type":"object"}`, gjson.Result{})
			return true
		})
		if err != nil {
			return b, err
		}
		b = append(b, ']')
	}
	tc := top.get("tool_choice")
	if !tc.Exists() || tc.Type == gjson.Null {
		return b, nil
	}
	switch tc.Get("type").Str {
	case "auto":
		b = append(b, `,"tool_choice":"auto"`...)
	case "any":
		b = append(b, `,"tool_choice":"required"`...)
	case "none":
		b = append(b, `,"tool_choice":"none"`...)
	case "tool":
		name := tc.Get("name")
		if !isString(name) {
			return b, bad("tool_choice.name", "tool_choice.name: Field required")
		}
		b = append(b, `,"tool_choice":{"type":"function","function":{"name":`...)
		b = append(b, name.Raw...)
		b = append(b, `}}`...)
	default:
		return b, bad("tool_choice.type", "tool_choice.type: must be one of auto, any, tool, none")
	}
	if tc.Get("disable_parallel_tool_use").Type == gjson.True {
		b = append(b, `,"parallel_tool_calls":false`...)
	}
	return b, nil
}

// stopReason maps a chat finish_reason to a Messages stop_reason.
func stopReason(finish string) string {
	switch finish {
	case "length":
		return "max_tokens"
	case "tool_calls", "function_call":
		return "tool_use"
	case "content_filter":
		return "refusal"
	}
	return "end_turn"
}

// appendMessagesUsage appends a Messages usage object: input_tokens are
// those not read from the cache.
func appendMessagesUsage(b []byte, u Usage) []byte {
	b = append(b, `{"input_tokens":`...)
	b = appendInt(b, max(u.Prompt-u.Cached, 0))
	b = append(b, `,"cache_creation_input_tokens":0,"cache_read_input_tokens":`...)
	b = appendInt(b, u.Cached)
	b = append(b, `,"output_tokens":`...)
	b = appendInt(b, u.Completion)
	return append(b, '}')
}

// ChatToMessage translates a chat.completion into a Messages API message
// for the client, which asked for model; id is the message's id.
func ChatToMessage(chat []byte, model, id string) ([]byte, Usage) {
	c := gjson.ParseBytes(chat)
	var u Usage
	if uo := c.Get("usage"); uo.IsObject() {
		u = readChatUsage(uo)
	}
	msg := c.Get("choices.0.message")
	b := make([]byte, 0, len(chat)+128)
	b = append(b, `{"id":`...)
	b = appendStr(b, id)
	b = append(b, `,"type":"message","role":"assistant","model":`...)
	b = appendStr(b, model)
	b = append(b, `,"content":[`...)
	n := 0
	if t := msg.Get("content"); isString(t) && t.Str != "" {
		b = append(b, `{"type":"text","text":`...)
		b = append(b, t.Raw...)
		b = append(b, '}')
		n++
	}
	msg.Get("tool_calls").ForEach(func(_, tc gjson.Result) bool {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, `{"type":"tool_use","id":`...)
		b = appendToolID(b, tc.Get("id"), n)
		b = append(b, `,"name":`...)
		b = appendRawOr(b, tc.Get("function.name"), `""`)
		b = append(b, `,"input":`...)
		b = appendInput(b, tc.Get("function.arguments").Str)
		b = append(b, '}')
		return true
	})
	b = append(b, `],"stop_reason":"`...)
	b = append(b, stopReason(c.Get("choices.0.finish_reason").Str)...)
	b = append(b, `","stop_sequence":null,"usage":`...)
	b = appendMessagesUsage(b, u)
	return append(b, '}'), u
}

// appendToolID copies a tool call's id, or makes one up for providers that
// send none.
func appendToolID(b []byte, id gjson.Result, n int) []byte {
	if isString(id) && id.Str != "" {
		return append(b, id.Raw...)
	}
	return append(strconv.AppendInt(append(b, `"toolu_`...), int64(n), 10), '"')
}

// appendInput writes a tool call's arguments as the tool_use input object.
func appendInput(b []byte, args string) []byte {
	if r := gjson.Parse(args); r.IsObject() && gjson.Valid(args) {
		return append(b, args...)
	}
	return append(b, "{}"...)
}

// MessagesErrorType is the Messages API's error type for an HTTP status.
func MessagesErrorType(status int) string {
	switch {
	case status == 401:
		return "authentication_error"
	case status == 402:
		return "billing_error"
	case status == 403:
		return "permission_error"
	case status == 404:
		return "not_found_error"
	case status == 413:
		return "request_too_large"
	case status == 429:
		return "rate_limit_error"
	case status == 503 || status == 529:
		return "overloaded_error"
	case status == 504:
		return "timeout_error"
	case status >= 500:
		return "api_error"
	}
	return "invalid_request_error"
}

// MessagesError is the Messages API's error body.
func MessagesError(b []byte, status int, message, requestID string) []byte {
	b = append(b, `{"type":"error","error":{"type":"`...)
	b = append(b, MessagesErrorType(status)...)
	b = append(b, `","message":`...)
	b = appendStr(b, message)
	b = append(b, '}')
	if requestID != "" {
		b = append(b, `,"request_id":`...)
		b = appendStr(b, requestID)
	}
	return append(b, '}')
}
