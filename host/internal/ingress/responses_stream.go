package ingress

import (
	"github.com/tidwall/gjson"
)

// ResponsesStream turns a chat completion stream into the Responses API's
// semantic events, each with its sequence_number:
//
//	first chunk           response.created, response.in_progress
//	delta.content         response.output_item.added (a message) and
//	                      response.content_part.added when none is open,
//	                      response.output_text.delta
//	delta.tool_calls[i]   response.output_item.added (a function_call) for a
//	                      new call, response.function_call_arguments.delta
//	end                   the open item's done events, then
//	                      response.completed (or response.incomplete)
//
// One item is open at a time: the next one closes it (its .done events).
type ResponsesStream struct {
	x       *Responses
	seq     int64
	started bool
	open    uint8 // blockNone, blockText or blockTool
	tool    int64 // the chat index of the open call
	items   int   // output items so far
	calls   int
	text    []byte // the open item's text or arguments, escaped
	callID  string // the open call's call_id and name, as JSON strings
	name    string
	itemID  string
	output  []byte // finished items, comma-separated
	finish  string
	usage   Usage
	scratch []byte
	// The answer as a chat assistant message's parts, and the final
	// Response object, for keeping the response.
	atext, acalls []byte
	final         []byte
}

// AssistantMessage is the streamed answer as the assistant message of a
// later request; valid after End.
func (r *ResponsesStream) AssistantMessage() []byte { return appendAssistant(nil, r.atext, r.acalls) }

// Final is the Response object sent with response.completed (or
// response.incomplete); nil before End.
func (r *ResponsesStream) Final() []byte { return r.final }

// NewResponsesStream starts the translation of one stream.
func NewResponsesStream(x *Responses) *ResponsesStream { return &ResponsesStream{x: x} }

// Usage is the usage the stream reported, if it did.
func (r *ResponsesStream) Usage() Usage { return r.usage }

// begin starts an event's JSON: type and sequence number.
func (r *ResponsesStream) begin(typ string) []byte {
	b := append(r.scratch[:0], `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","sequence_number":`...)
	b = appendInt(b, r.seq)
	r.seq++
	return b
}

// emit frames the event b as the SSE event typ.
func (r *ResponsesStream) emit(dst []byte, typ string, b []byte) []byte {
	r.scratch = b
	return sseEvent(dst, typ, b)
}

func (r *ResponsesStream) itemHead(b []byte) []byte {
	b = append(b, `,"item_id":`...)
	b = appendStr(b, r.itemID)
	b = append(b, `,"output_index":`...)
	return appendInt(b, int64(r.items-1))
}

func (r *ResponsesStream) start(dst []byte) []byte {
	r.started = true
	for _, typ := range [...]string{"response.created", "response.in_progress"} {
		b := r.begin(typ)
		b = append(b, `,"response":`...)
		b = r.x.appendResponse(b, "in_progress", "", nil, nil)
		dst = r.emit(dst, typ, append(b, '}'))
	}
	return dst
}

// closeItem sends the open item's done events and keeps it for the final
// response.
func (r *ResponsesStream) closeItem(dst []byte) []byte {
	if r.open == blockNone {
		return dst
	}
	n := len(r.output)
	if n > 0 {
		r.output = append(r.output, ',')
		n++
	}
	if r.open == blockText {
		b := r.begin("response.output_text.done")
		b = append(r.itemHead(b), `,"content_index":0,"logprobs":[],"text":"`...)
		b = append(b, r.text...)
		dst = r.emit(dst, "response.output_text.done", append(b, `"}`...))
		b = r.begin("response.content_part.done")
		b = append(r.itemHead(b), `,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":"`...)
		b = append(b, r.text...)
		dst = r.emit(dst, "response.content_part.done", append(b, `"}}`...))
		r.output = appendMessageItem(r.output, r.itemID, "completed", r.text)
		r.atext = append(r.atext, r.text...)
	} else {
		b := r.begin("response.function_call_arguments.done")
		b = append(r.itemHead(b), `,"arguments":"`...)
		b = append(b, r.text...)
		b = append(b, `","name":`...)
		b = append(b, r.name...)
		dst = r.emit(dst, "response.function_call_arguments.done", append(b, '}'))
		r.output = appendCallItem(r.output, r.itemID, "completed", r.callID, r.name, r.text)
		r.acalls = appendChatCall(r.acalls, r.callID, r.name, r.text)
	}
	b := r.begin("response.output_item.done")
	b = append(b, `,"output_index":`...)
	b = appendInt(b, int64(r.items-1))
	b = append(b, `,"item":`...)
	b = append(b, r.output[n:]...)
	dst = r.emit(dst, "response.output_item.done", append(b, '}'))
	r.open, r.text = blockNone, r.text[:0]
	return dst
}

// Chunk appends the events for one chat chunk.
func (r *ResponsesStream) Chunk(dst, chunk []byte) []byte {
	if !r.started {
		dst = r.start(dst)
	}
	c := gjson.ParseBytes(chunk)
	if u := c.Get("usage"); u.IsObject() {
		r.usage = readChatUsage(u)
	}
	choice := c.Get("choices.0")
	if !choice.Exists() {
		return dst
	}
	delta := choice.Get("delta")
	if t := delta.Get("content"); isString(t) && len(t.Raw) > 2 {
		if r.open != blockText {
			dst = r.closeItem(dst)
			r.open, r.items = blockText, r.items+1
			r.itemID = "msg_" + r.x.ID[len("resp_"):]
			if r.items > 1 {
				r.itemID += "_" + itoa(r.items)
			}
			b := r.begin("response.output_item.added")
			b = append(b, `,"output_index":`...)
			b = appendInt(b, int64(r.items-1))
			b = append(b, `,"item":{"id":`...)
			b = appendStr(b, r.itemID)
			b = append(b, `,"type":"message","status":"in_progress","role":"assistant","content":[]}}`...)
			dst = r.emit(dst, "response.output_item.added", b)
			b = r.begin("response.content_part.added")
			b = append(r.itemHead(b), `,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":""}}`...)
			dst = r.emit(dst, "response.content_part.added", b)
		}
		r.text = append(r.text, inner(t.Raw)...)
		b := r.begin("response.output_text.delta")
		b = append(r.itemHead(b), `,"content_index":0,"logprobs":[],"delta":`...)
		b = append(b, t.Raw...)
		dst = r.emit(dst, "response.output_text.delta", append(b, '}'))
	}
	delta.Get("tool_calls").ForEach(func(_, tc gjson.Result) bool {
		idx := tc.Get("index").Int()
		if r.open != blockTool || idx != r.tool {
			dst = r.closeItem(dst)
			r.open, r.tool, r.items, r.calls = blockTool, idx, r.items+1, r.calls+1
			r.itemID = r.x.fcID(r.calls)
			r.callID = orRaw(tc.Get("id"), `"call_`+itoa(r.calls)+`"`)
			r.name = orRaw(tc.Get("function.name"), `""`)
			b := r.begin("response.output_item.added")
			b = append(b, `,"output_index":`...)
			b = appendInt(b, int64(r.items-1))
			b = append(b, `,"item":`...)
			b = appendCallItem(b, r.itemID, "in_progress", r.callID, r.name, nil)
			dst = r.emit(dst, "response.output_item.added", append(b, '}'))
		}
		if args := tc.Get("function.arguments"); isString(args) && len(args.Raw) > 2 {
			r.text = append(r.text, inner(args.Raw)...)
			b := r.begin("response.function_call_arguments.delta")
			b = append(r.itemHead(b), `,"delta":`...)
			b = append(b, args.Raw...)
			dst = r.emit(dst, "response.function_call_arguments.delta", append(b, '}'))
		}
		return true
	})
	if fr := choice.Get("finish_reason"); isString(fr) {
		r.finish = fr.Str
	}
	return dst
}

// End appends the events that close a stream that ended normally.
func (r *ResponsesStream) End(dst []byte) []byte {
	if !r.started {
		dst = r.start(dst)
	}
	dst = r.closeItem(dst)
	inc := incompleteReason(r.finish)
	typ := "response.completed"
	if inc != "" {
		typ = "response.incomplete"
	}
	b := r.begin(typ)
	b = append(b, `,"response":`...)
	n := len(b)
	b = r.x.appendResponse(b, statusOf(inc), inc, r.output, &r.usage)
	r.final = append(r.final[:0], b[n:]...)
	return r.emit(dst, typ, append(b, '}'))
}

// Fail appends the error event of a stream that failed after it began.
func (r *ResponsesStream) Fail(dst []byte, _ int, code, message string) []byte {
	b := r.begin("error")
	b = append(b, `,"code":`...)
	b = appendStr(b, code)
	b = append(b, `,"message":`...)
	b = appendStr(b, message)
	b = append(b, `,"param":null}`...)
	return r.emit(dst, "error", b)
}

func itoa(n int) string { return string(appendInt(nil, int64(n))) }
