package main

import (
	"strconv"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/chatreq"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// The stream translation. Each Messages API event carries its name in its
// JSON "type" as well as in the SSE event: line, so the plugin reads the
// data the host parsed and switches on "type":
//
//	message_start                  remembered: id, model, usage (nothing sent)
//	content_block_start text       nothing
//	content_block_start tool_use   a chunk with the tool call's index, id, name and "" arguments
//	content_block_delta text_delta a content chunk
//	  input_json_delta             an arguments chunk for that tool call's index
//	content_block_stop             "{}" arguments for a tool call that got none
//	message_delta                  the finish chunk (finish_reason), usage replaced
//	message_stop                   the usage chunk (choices: []), and the stream is finished
//	ping                           nothing
//	error                          the stream fails with the error's status and message
//	thinking, redacted_thinking,   dropped, with their deltas (thinking_delta,
//	  server tool blocks             signature_delta, citations_delta)
//
// The first chunk sent also carries "role":"assistant". No chunk is sent
// for message_start, so an error that arrives before any content still
// becomes a plain HTTP error with its own status (529 overload: 503).
// Tool calls are numbered in the order they start (index 0, 1, ...),
// whatever their position among the content blocks.
//
// A streamer holds one stream's translation state and is driven by the
// Handler of its upstream request: onHead when the answer's head arrives,
// onEvent for each event, onEnd at the end of the body. Streams of an
// instance interleave, so everything that lives from one event to the next
// is in the streamer; the package variables below are scratch that one
// callback fills and sends before it returns.

// blockKind says what a content block of the upstream message became.
type blockKind uint8

const (
	blockIgnored blockKind = iota
	blockText
	blockTool
)

type block struct {
	kind    blockKind
	tool    int  // the tool call's index, for blockTool
	hasArgs bool // an arguments chunk was sent
}

// maxBlocks bounds the content blocks of one message a stream may open.
const maxBlocks = 4096

// streamer is the translation state of one stream.
type streamer struct {
	created  int64
	head     []byte // `{"id":...,"object":...,"model":...,"choices":[`
	textPre  []byte // head + `{"index":0,"delta":{"content":`, once the role is sent
	blocks   []block
	tools    int
	u        usage
	started  bool // message_start seen
	roleSent bool
	finished bool // finish chunk sent
	stopped  bool // usage chunk sent

	// Room for head, textPre and the first blocks, so that a stream's
	// state is one allocation; longer ones move to the heap.
	headArr  [192]byte
	preArr   [224]byte
	blockArr [8]block
}

// newStreamer returns the state of a new stream.
func newStreamer() *streamer {
	t := new(streamer)
	t.head = t.headArr[:0]
	t.blocks = t.blockArr[:0]
	return t
}

// Scratch of one callback: the chunk being built and the tape of the event
// being read. Both are filled and used within one onEvent or onEnd and
// reused by the next, whichever stream it belongs to.
var (
	chunkBuf = make([]byte, 0, 1<<10)
	evTape   = make([]uint32, 0, 64)
)

// onHead is the Handler's Head: the Messages API sends no timestamp, so
// created is the response's Date.
func (t *streamer) onHead(s *sdk.Stream, r *sdk.Response) error {
	t.created = chatreq.Created(r)
	return nil
}

// onEnd is the Handler's End: the body ended without message_stop.
func (t *streamer) onEnd(s *sdk.Stream) error {
	if s.Ended() {
		return nil
	}
	if !t.finished {
		return &sdk.HTTPError{Status: 502, Message: "the upstream stream ended before the message was complete"}
	}
	if !t.stopped {
		if err := t.usageChunk(s); err != nil {
			return err
		}
	}
	return s.Finish()
}

// onEvent is the Handler's Event: it translates one event. message_stop
// finishes the stream and an error event fails it; events that come after
// the stream ended are ignored.
func (t *streamer) onEvent(s *sdk.Stream, data []byte) error {
	if s.Ended() {
		return nil
	}
	doc, err := s.ParseJSON(data, evTape)
	evTape = doc.Tape
	if err != nil {
		return &sdk.HTTPError{Status: 502, Message: "the upstream sent a malformed stream event"}
	}
	var typ, index, delta, cblock, message, usageV, errObj rawjson.Value
	for m := doc.Root().Members(); m.Next(); {
		switch string(m.Key()) {
		case "type":
			typ = m.Value()
		case "index":
			index = m.Value()
		case "delta":
			delta = m.Value()
		case "content_block":
			cblock = m.Value()
		case "message":
			message = m.Value()
		case "usage":
			usageV = m.Value()
		case "error":
			errObj = m.Value()
		}
	}
	switch eventType(typ) {
	case "content_block_delta":
		return t.blockDelta(s, index, delta)
	case "content_block_start":
		return t.blockStart(s, index, cblock)
	case "content_block_stop":
		return t.blockStop(s, index)
	case "message_start":
		return t.messageStart(message)
	case "message_delta":
		return t.messageDelta(s, delta, usageV)
	case "message_stop":
		if !t.finished {
			return &sdk.HTTPError{Status: 502, Message: "the upstream stream stopped without a stop reason"}
		}
		if err := t.usageChunk(s); err != nil {
			return err
		}
		return s.Finish()
	case "error":
		// {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}:
		// the host reads error.message and error.type from it as it is.
		return s.Fail(statusForError(errObj.Get("type")), data)
	}
	return nil // ping, and event types added later
}

// eventType returns the known event type typ names, or "". A switch on the
// string would tell "content_block_delta" from "content_block_start" by
// comparing their 14 common bytes in a loop, byte by byte on wasm; the
// length and one byte pick the candidate, and rawjson.Equal confirms it
// 8 bytes a step.
func eventType(typ rawjson.Value) string {
	t, _ := typ.Str()
	var k string
	switch len(t) {
	case 19:
		k = "content_block_start"
		if t[14] == 'd' {
			k = "content_block_delta"
		}
	case 18:
		k = "content_block_stop"
	case 13:
		k = "message_start"
		if t[8] == 'd' {
			k = "message_delta"
		}
	case 12:
		k = "message_stop"
	case 5:
		k = "error"
	}
	if !rawjson.Equal(t, k) {
		return ""
	}
	return k
}

func (t *streamer) messageStart(message rawjson.Value) error {
	var id, model, usageV rawjson.Value
	for m := message.Members(); m.Next(); {
		switch string(m.Key()) {
		case "id":
			id = m.Value()
		case "model":
			model = m.Value()
		case "usage":
			usageV = m.Value()
		}
	}
	t.u.read(usageV)
	h := append(t.head[:0], `{"id":`...)
	h = appendChatID(h, id)
	h = append(h, `,"object":"chat.completion.chunk","created":`...)
	h = strconv.AppendInt(h, t.created, 10)
	h = append(h, `,"model":`...)
	h = appendStringOr(h, model, "")
	h = append(h, `,"choices":[`...)
	t.head = h
	t.started = true
	return nil
}

// blockAt returns the block at a content_block_* event's index.
func (t *streamer) blockAt(index rawjson.Value, create bool) (*block, error) {
	i, ok := index.Int()
	if !t.started || !ok || i < 0 || i >= maxBlocks {
		return nil, &sdk.HTTPError{Status: 502, Message: "the upstream sent a content block event out of order"}
	}
	for create && int(i) >= len(t.blocks) {
		t.blocks = append(t.blocks, block{})
	}
	if int(i) >= len(t.blocks) {
		return &block{}, nil // never started: ignored
	}
	return &t.blocks[i], nil
}

func (t *streamer) blockStart(s *sdk.Stream, index, cb rawjson.Value) error {
	b, err := t.blockAt(index, true)
	if err != nil {
		return err
	}
	var typ, id, name, text rawjson.Value
	for m := cb.Members(); m.Next(); {
		switch string(m.Key()) {
		case "type":
			typ = m.Value()
		case "id":
			id = m.Value()
		case "name":
			name = m.Value()
		case "text":
			text = m.Value()
		}
	}
	switch {
	case typ.StringIs("text"):
		*b = block{kind: blockText}
		if text.Kind() == rawjson.String && len(text.Raw()) > 2 {
			return t.contentChunk(s, text.Raw())
		}
	case typ.StringIs("tool_use"):
		if id.Kind() != rawjson.String || name.Kind() != rawjson.String {
			return &sdk.HTTPError{Status: 502, Message: "the upstream started a tool call without id or name"}
		}
		*b = block{kind: blockTool, tool: t.tools}
		t.tools++
		d := t.open()
		d = append(d, `"tool_calls":[{"index":`...)
		d = strconv.AppendInt(d, int64(b.tool), 10)
		d = append(d, `,"id":`...)
		d = append(d, id.Raw()...)
		d = append(d, `,"type":"function","function":{"name":`...)
		d = append(d, name.Raw()...)
		d = append(d, `,"arguments":""}}]`...)
		return t.send(s, d, "")
	default:
		*b = block{kind: blockIgnored}
	}
	return nil
}

func (t *streamer) blockDelta(s *sdk.Stream, index, delta rawjson.Value) error {
	b, err := t.blockAt(index, false)
	if err != nil {
		return err
	}
	switch b.kind {
	case blockText:
		txt := delta.Get("text")
		if txt.Kind() == rawjson.String && len(txt.Raw()) > 2 {
			return t.contentChunk(s, txt.Raw())
		}
	case blockTool:
		p := delta.Get("partial_json")
		if p.Kind() == rawjson.String && len(p.Raw()) > 2 {
			b.hasArgs = true
			return t.argsChunk(s, b.tool, p.Raw())
		}
	}
	return nil
}

func (t *streamer) blockStop(s *sdk.Stream, index rawjson.Value) error {
	b, err := t.blockAt(index, false)
	if err != nil {
		return err
	}
	if b.kind == blockTool && !b.hasArgs {
		// A tool without parameters: clients parse the arguments they
		// collected, and "" is not JSON.
		b.hasArgs = true
		return t.argsChunk(s, b.tool, []byte(`"{}"`))
	}
	return nil
}

func (t *streamer) messageDelta(s *sdk.Stream, delta, usageV rawjson.Value) error {
	if !t.started {
		return &sdk.HTTPError{Status: 502, Message: "the upstream sent message_delta before message_start"}
	}
	t.u.read(usageV)
	if t.finished {
		return nil
	}
	t.finished = true
	return t.send(s, t.open(), finishReason(delta.Get("stop_reason")))
}

// open starts a chunk with one choice in chunkBuf and returns it with its
// delta object open; the role goes into the first chunk sent.
func (t *streamer) open() []byte {
	b := append(chunkBuf[:0], t.head...)
	b = append(b, `{"index":0,"delta":{`...)
	if !t.roleSent {
		t.roleSent = true
		b = append(b, `"role":"assistant"`...)
		if t.finished {
			return b
		}
		b = append(b, ',')
	}
	return b
}

// send closes the delta opened by open and emits the chunk.
func (t *streamer) send(s *sdk.Stream, b []byte, finish string) error {
	b = append(b, `},"logprobs":null,"finish_reason":`...)
	if finish == "" {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = append(b, finish...)
		b = append(b, '"')
	}
	b = append(b, "}]}"...)
	chunkBuf = b[:0]
	return s.EmitChunk(b)
}

// chunkTail ends a chunk whose delta is still open.
const chunkTail = `},"logprobs":null,"finish_reason":null}]}`

// contentChunk sends a text delta. Text chunks are most of a stream, so
// after the first their prefix is copied whole: three appends a chunk.
func (t *streamer) contentChunk(s *sdk.Stream, text []byte) error {
	if !t.started {
		return &sdk.HTTPError{Status: 502, Message: "the upstream sent content before message_start"}
	}
	if !t.roleSent {
		d := t.open()
		d = append(d, `"content":`...)
		d = append(d, text...)
		return t.send(s, d, "")
	}
	if t.textPre == nil {
		t.textPre = append(append(t.preArr[:0], t.head...), `{"index":0,"delta":{"content":`...)
	}
	b := append(chunkBuf[:0], t.textPre...)
	b = append(b, text...)
	b = append(b, chunkTail...)
	chunkBuf = b[:0]
	return s.EmitChunk(b)
}

func (t *streamer) argsChunk(s *sdk.Stream, tool int, args []byte) error {
	d := t.open()
	d = append(d, `"tool_calls":[{"index":`...)
	d = strconv.AppendInt(d, int64(tool), 10)
	d = append(d, `,"function":{"arguments":`...)
	d = append(d, args...)
	d = append(d, "}}]"...)
	return t.send(s, d, "")
}

// usageChunk emits the final chunk: no choices, the usage. The host always
// asks for usage, records it, and passes this chunk on only to clients that
// asked for it themselves.
func (t *streamer) usageChunk(s *sdk.Stream) error {
	t.stopped = true
	b := append(chunkBuf[:0], t.head...)
	b = append(b, `],"usage":`...)
	b = t.u.append(b)
	b = append(b, '}')
	chunkBuf = b[:0]
	return s.EmitChunk(b)
}
