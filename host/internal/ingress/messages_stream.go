package ingress

import (
	"github.com/tidwall/gjson"
)

// MessagesStream turns a chat completion stream (its chunks' JSON, in
// order) into the Messages API's events:
//
//	first chunk                message_start (usage 0 until the end), ping
//	delta.content              content_block_start text (when none is open),
//	                           content_block_delta text_delta
//	delta.tool_calls[i]        content_block_start tool_use (a new call),
//	                           content_block_delta input_json_delta
//	finish_reason, usage       remembered
//	end                        content_block_stop of the open block,
//	                           message_delta (stop_reason, usage), message_stop
//
// A block is stopped when the next one starts, so blocks never interleave.
type MessagesStream struct {
	id, model string
	started   bool
	open      uint8 // blockNone, blockText or blockTool
	tool      int64 // the chat index of the open tool call
	blocks    int64 // blocks started so far: the next block's index
	stop      string
	usage     Usage
	scratch   []byte
}

const (
	blockNone uint8 = iota
	blockText
	blockTool
)

// NewMessagesStream starts the translation of one stream for a client that
// asked for model; id is the message's id.
func NewMessagesStream(id, model string) *MessagesStream {
	return &MessagesStream{id: id, model: model, stop: "end_turn"}
}

// Usage is the usage the stream reported, if it did.
func (m *MessagesStream) Usage() Usage { return m.usage }

// event frames the event held in m.scratch.
func (m *MessagesStream) event(dst []byte, name string) []byte {
	return sseEvent(dst, name, m.scratch)
}

func (m *MessagesStream) start(dst []byte) []byte {
	m.started = true
	b := append(m.scratch[:0], `{"type":"message_start","message":{"id":`...)
	b = appendStr(b, m.id)
	b = append(b, `,"type":"message","role":"assistant","model":`...)
	b = appendStr(b, m.model)
	b = append(b, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}`...)
	m.scratch = b
	dst = m.event(dst, "message_start")
	return append(dst, "event: ping\ndata: {\"type\":\"ping\"}\n\n"...)
}

// closeBlock stops the open block, if any.
func (m *MessagesStream) closeBlock(dst []byte) []byte {
	if m.open == blockNone {
		return dst
	}
	m.open = blockNone
	b := append(m.scratch[:0], `{"type":"content_block_stop","index":`...)
	m.scratch = append(appendInt(b, m.blocks-1), '}')
	return m.event(dst, "content_block_stop")
}

// Chunk appends the events for one chat chunk.
func (m *MessagesStream) Chunk(dst, chunk []byte) []byte {
	if !m.started {
		dst = m.start(dst)
	}
	c := gjson.ParseBytes(chunk)
	if u := c.Get("usage"); u.IsObject() {
		m.usage = readChatUsage(u)
	}
	choice := c.Get("choices.0")
	if !choice.Exists() {
		return dst
	}
	delta := choice.Get("delta")
	if t := delta.Get("content"); isString(t) && len(t.Raw) > 2 {
		if m.open != blockText {
			dst = m.closeBlock(dst)
			b := append(m.scratch[:0], `{"type":"content_block_start","index":`...)
			m.scratch = append(appendInt(b, m.blocks), `,"content_block":{"type":"text","text":""}}`...)
			dst = m.event(dst, "content_block_start")
			m.open, m.blocks = blockText, m.blocks+1
		}
		b := append(m.scratch[:0], `{"type":"content_block_delta","index":`...)
		b = appendInt(b, m.blocks-1)
		b = append(b, `,"delta":{"type":"text_delta","text":`...)
		b = append(b, t.Raw...)
		m.scratch = append(b, `}}`...)
		dst = m.event(dst, "content_block_delta")
	}
	delta.Get("tool_calls").ForEach(func(_, tc gjson.Result) bool {
		idx := tc.Get("index").Int()
		if m.open != blockTool || idx != m.tool {
			dst = m.closeBlock(dst)
			b := append(m.scratch[:0], `{"type":"content_block_start","index":`...)
			b = appendInt(b, m.blocks)
			b = append(b, `,"content_block":{"type":"tool_use","id":`...)
			b = appendToolID(b, tc.Get("id"), int(m.blocks))
			b = append(b, `,"name":`...)
			b = appendRawOr(b, tc.Get("function.name"), `""`)
			m.scratch = append(b, `,"input":{}}}`...)
			dst = m.event(dst, "content_block_start")
			m.open, m.tool, m.blocks = blockTool, idx, m.blocks+1
		}
		if args := tc.Get("function.arguments"); isString(args) && len(args.Raw) > 2 {
			b := append(m.scratch[:0], `{"type":"content_block_delta","index":`...)
			b = appendInt(b, m.blocks-1)
			b = append(b, `,"delta":{"type":"input_json_delta","partial_json":`...)
			b = append(b, args.Raw...)
			m.scratch = append(b, `}}`...)
			dst = m.event(dst, "content_block_delta")
		}
		return true
	})
	if fr := choice.Get("finish_reason"); isString(fr) {
		m.stop = stopReason(fr.Str)
	}
	return dst
}

// End appends the events that close a stream that ended normally.
func (m *MessagesStream) End(dst []byte) []byte {
	if !m.started {
		dst = m.start(dst)
	}
	dst = m.closeBlock(dst)
	b := append(m.scratch[:0], `{"type":"message_delta","delta":{"stop_reason":"`...)
	b = append(b, m.stop...)
	b = append(b, `","stop_sequence":null},"usage":`...)
	m.scratch = append(appendMessagesUsage(b, m.usage), '}')
	dst = m.event(dst, "message_delta")
	return append(dst, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"...)
}

// Fail appends the error event of a stream that failed after it began.
func (m *MessagesStream) Fail(dst []byte, status int, _, message string) []byte {
	m.scratch = MessagesError(m.scratch[:0], status, message, "")
	return m.event(dst, "error")
}

// NativeMessagesStream frames the events of an Anthropic upstream, relayed
// as they came (each chunk is one event's JSON data, whose "type" names
// it), and reads their usage for the request log.
type NativeMessagesStream struct {
	usage          Usage
	in, read, made int64
	scratch        []byte
}

// Usage is what the events reported: input counts from message_start,
// output (and any updated input) counts from message_delta.
func (n *NativeMessagesStream) Usage() Usage { return n.usage }

// Chunk appends one event.
func (n *NativeMessagesStream) Chunk(dst, data []byte) []byte {
	typ := gjson.GetBytes(data, "type")
	name := typ.Str
	if !isString(typ) || !eventName(name) {
		name = "message"
	}
	switch name {
	case "message_start":
		n.readUsage(gjson.GetBytes(data, "message.usage"))
	case "message_delta":
		n.readUsage(gjson.GetBytes(data, "usage"))
	}
	return sseEvent(dst, name, data)
}

// readUsage reads a Messages usage object; counts it lacks keep their
// value. The unified prompt count includes the cache's reads and writes.
func (n *NativeMessagesStream) readUsage(u gjson.Result) {
	if !u.IsObject() {
		return
	}
	n.usage.Known = true
	if v := u.Get("input_tokens"); v.Exists() {
		n.in = v.Int()
	}
	if v := u.Get("cache_read_input_tokens"); v.Exists() {
		n.read = v.Int()
	}
	if v := u.Get("cache_creation_input_tokens"); v.Exists() {
		n.made = v.Int()
	}
	if v := u.Get("output_tokens"); v.Exists() {
		n.usage.Completion = v.Int()
	}
	n.usage.Prompt, n.usage.Cached = n.in+n.read+n.made, n.read
}

// End appends nothing: the upstream sent message_stop itself.
func (n *NativeMessagesStream) End(dst []byte) []byte { return dst }

// Fail appends the error event of a stream that failed after it began.
func (n *NativeMessagesStream) Fail(dst []byte, status int, _, message string) []byte {
	n.scratch = MessagesError(n.scratch[:0], status, message, "")
	return sseEvent(dst, "error", n.scratch)
}

// NativeMessageUsage reads the usage of a Message an Anthropic upstream
// answered.
func NativeMessageUsage(body []byte) Usage {
	var n NativeMessagesStream
	n.readUsage(gjson.GetBytes(body, "usage"))
	return n.usage
}

// eventName accepts the names an event's type may give its SSE event line.
func eventName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
