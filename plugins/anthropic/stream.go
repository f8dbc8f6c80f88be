package main

import (
	"io"
	"strconv"

	"github.com/llm-proxy/llm-proxy/sdk"
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
//	message_stop                   the usage chunk (choices: [])
//	ping                           nothing
//	error                          the call fails with the error's status and message
//	thinking, redacted_thinking,   dropped, with their deltas (thinking_delta,
//	  server tool blocks             signature_delta, citations_delta)
//
// The first chunk sent also carries "role":"assistant". No chunk is sent
// for message_start, so an error that arrives before any content still
// becomes a plain HTTP error with its own status (529 overload: 503).
// Tool calls are numbered in the order they start (index 0, 1, ...),
// whatever their position among the content blocks.

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

type streamer struct {
	c        *sdk.Call
	created  int64
	head     []byte // `{"id":...,"object":...,"model":...,"choices":[`
	textPre  []byte // head + `{"index":0,"delta":{"content":`, once the role is sent
	buf      []byte
	blocks   []block
	tools    int
	u        usage
	started  bool // message_start seen
	roleSent bool
	finished bool // finish chunk sent
	stopped  bool // usage chunk sent
}

// Buffers reused across the calls of a warm instance.
var (
	headBuf    = make([]byte, 0, 256)
	chunkBuf   = make([]byte, 0, 1<<10)
	textPreBuf = make([]byte, 0, 256)
	blockBuf   = make([]block, 0, 8)
)

func translateStream(c *sdk.Call, resp *sdk.Response, created int64) error {
	s := &streamer{c: c, created: created, head: headBuf[:0], buf: chunkBuf[:0], blocks: blockBuf[:0]}
	defer func() {
		headBuf, chunkBuf, blockBuf = s.head[:0], s.buf[:0], s.blocks[:0]
		if s.textPre != nil {
			textPreBuf = s.textPre[:0]
		}
	}()
	for {
		data, err := resp.NextEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		done, err := s.event(data)
		if err != nil || done {
			return err
		}
	}
	if !s.finished {
		return &sdk.HTTPError{Status: 502, Message: "the upstream stream ended before the message was complete"}
	}
	if !s.stopped {
		return s.usageChunk()
	}
	return nil
}

// evTape is reused for every event of every stream of a warm instance.
var evTape = make([]uint32, 0, 64)

// event handles one event; done reports the end of the message (or a
// failure already reported).
func (s *streamer) event(data []byte) (done bool, err error) {
	doc, err := s.c.ParseJSON(data, evTape)
	evTape = doc.Tape
	if err != nil {
		return false, &sdk.HTTPError{Status: 502, Message: "the upstream sent a malformed stream event"}
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
		return false, s.blockDelta(index, delta)
	case "content_block_start":
		return false, s.blockStart(index, cblock)
	case "content_block_stop":
		return false, s.blockStop(index)
	case "message_start":
		return false, s.messageStart(message)
	case "message_delta":
		return false, s.messageDelta(delta, usageV)
	case "message_stop":
		if !s.finished {
			return false, &sdk.HTTPError{Status: 502, Message: "the upstream stream stopped without a stop reason"}
		}
		return true, s.usageChunk()
	case "error":
		// {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}:
		// the host reads error.message and error.type from it as it is.
		return true, s.c.Fail(statusForError(errObj.Get("type")), data)
	}
	return false, nil // ping, and event types added later
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

func (s *streamer) messageStart(message rawjson.Value) error {
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
	s.u.read(usageV)
	h := append(s.head[:0], `{"id":`...)
	h = appendStringOr(h, id, "msg")
	h = append(h, `,"object":"chat.completion.chunk","created":`...)
	h = strconv.AppendInt(h, s.created, 10)
	h = append(h, `,"model":`...)
	h = appendStringOr(h, model, "")
	h = append(h, `,"choices":[`...)
	s.head = h
	s.started = true
	return nil
}

// blockAt returns the block at a content_block_* event's index.
func (s *streamer) blockAt(index rawjson.Value, create bool) (*block, error) {
	i, ok := index.Int()
	if !s.started || !ok || i < 0 || i >= maxBlocks {
		return nil, &sdk.HTTPError{Status: 502, Message: "the upstream sent a content block event out of order"}
	}
	for create && int(i) >= len(s.blocks) {
		s.blocks = append(s.blocks, block{})
	}
	if int(i) >= len(s.blocks) {
		return &block{}, nil // never started: ignored
	}
	return &s.blocks[i], nil
}

func (s *streamer) blockStart(index, cb rawjson.Value) error {
	b, err := s.blockAt(index, true)
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
			return s.contentChunk(text.Raw())
		}
	case typ.StringIs("tool_use"):
		if id.Kind() != rawjson.String || name.Kind() != rawjson.String {
			return &sdk.HTTPError{Status: 502, Message: "the upstream started a tool call without id or name"}
		}
		*b = block{kind: blockTool, tool: s.tools}
		s.tools++
		d := s.open()
		d = append(d, `"tool_calls":[{"index":`...)
		d = strconv.AppendInt(d, int64(b.tool), 10)
		d = append(d, `,"id":`...)
		d = append(d, id.Raw()...)
		d = append(d, `,"type":"function","function":{"name":`...)
		d = append(d, name.Raw()...)
		d = append(d, `,"arguments":""}}]`...)
		return s.send(d, "")
	default:
		*b = block{kind: blockIgnored}
	}
	return nil
}

func (s *streamer) blockDelta(index, delta rawjson.Value) error {
	b, err := s.blockAt(index, false)
	if err != nil {
		return err
	}
	switch b.kind {
	case blockText:
		t := delta.Get("text")
		if t.Kind() == rawjson.String && len(t.Raw()) > 2 {
			return s.contentChunk(t.Raw())
		}
	case blockTool:
		p := delta.Get("partial_json")
		if p.Kind() == rawjson.String && len(p.Raw()) > 2 {
			b.hasArgs = true
			return s.argsChunk(b.tool, p.Raw())
		}
	}
	return nil
}

func (s *streamer) blockStop(index rawjson.Value) error {
	b, err := s.blockAt(index, false)
	if err != nil {
		return err
	}
	if b.kind == blockTool && !b.hasArgs {
		// A tool without parameters: clients parse the arguments they
		// collected, and "" is not JSON.
		b.hasArgs = true
		return s.argsChunk(b.tool, []byte(`"{}"`))
	}
	return nil
}

func (s *streamer) messageDelta(delta, usageV rawjson.Value) error {
	if !s.started {
		return &sdk.HTTPError{Status: 502, Message: "the upstream sent message_delta before message_start"}
	}
	s.u.read(usageV)
	if s.finished {
		return nil
	}
	s.finished = true
	return s.send(s.open(), finishReason(delta.Get("stop_reason")))
}

// open starts a chunk with one choice and returns it with its delta object
// open; the role goes into the first chunk sent.
func (s *streamer) open() []byte {
	b := append(s.buf[:0], s.head...)
	b = append(b, `{"index":0,"delta":{`...)
	if !s.roleSent {
		s.roleSent = true
		b = append(b, `"role":"assistant"`...)
		if s.finished {
			return b
		}
		b = append(b, ',')
	}
	return b
}

// send closes the delta opened by open and emits the chunk.
func (s *streamer) send(b []byte, finish string) error {
	b = append(b, `},"logprobs":null,"finish_reason":`...)
	if finish == "" {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = append(b, finish...)
		b = append(b, '"')
	}
	b = append(b, "}]}"...)
	s.buf = b
	return s.c.EmitChunk(b)
}

// chunkTail ends a chunk whose delta is still open.
const chunkTail = `},"logprobs":null,"finish_reason":null}]}`

// contentChunk sends a text delta. Text chunks are most of a stream, so
// after the first their prefix is copied whole: three appends a chunk.
func (s *streamer) contentChunk(text []byte) error {
	if !s.started {
		return &sdk.HTTPError{Status: 502, Message: "the upstream sent content before message_start"}
	}
	if !s.roleSent {
		d := s.open()
		d = append(d, `"content":`...)
		d = append(d, text...)
		return s.send(d, "")
	}
	if s.textPre == nil {
		s.textPre = append(append(textPreBuf[:0], s.head...), `{"index":0,"delta":{"content":`...)
	}
	b := append(s.buf[:0], s.textPre...)
	b = append(b, text...)
	b = append(b, chunkTail...)
	s.buf = b
	return s.c.EmitChunk(b)
}

func (s *streamer) argsChunk(tool int, args []byte) error {
	d := s.open()
	d = append(d, `"tool_calls":[{"index":`...)
	d = strconv.AppendInt(d, int64(tool), 10)
	d = append(d, `,"function":{"arguments":`...)
	d = append(d, args...)
	d = append(d, "}}]"...)
	return s.send(d, "")
}

// usageChunk emits the final chunk: no choices, the usage. The host always
// asks for usage, records it, and passes this chunk on only to clients that
// asked for it themselves.
func (s *streamer) usageChunk() error {
	s.stopped = true
	b := append(s.buf[:0], s.head...)
	b = append(b, `],"usage":`...)
	b = s.u.append(b)
	b = append(b, '}')
	s.buf = b
	return s.c.EmitChunk(b)
}
