package main

import (
	"strconv"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/chatreq"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// The stream translation. streamGenerateContent?alt=sse sends a whole
// GenerateContentResponse per event, holding the new parts only, and ends
// without a [DONE]:
//
//	text parts                 content chunks of the candidate's choice
//	thought parts              dropped
//	functionCall parts         a tool call chunk with index, id, name and the
//	                           whole arguments (Gemini sends a call whole)
//	finishReason               the choice's finish chunk
//	promptFeedback.blockReason a refusal and a content_filter finish chunk
//	  without candidates
//	usageMetadata              kept as it came, the last report wins (never
//	                           summed), decoded once at the end
//	an error object            the stream fails with its status and message
//	the end of the body        the usage chunk; a 502 if a choice had no finishReason
//
// The first chunk of a choice also carries "role":"assistant". Text is
// copied as it came, without decoding.

// maxChoices bounds the candidates a stream may address.
const maxChoices = 16

type choiceState struct {
	used, roleSent, finished, calls bool
	tools                           int
}

// streamer is the state of one chat_stream, from the request to the end of
// the upstream's body: the Handler's functions are its methods. Streams
// interleave on an instance, so everything here is the stream's own; the
// chunk being assembled is not kept from one callback to the next and is
// built in the package's chunkBuf.
type streamer struct {
	created  int64
	reqModel []byte
	rid      []byte // the response id's raw content
	head     []byte // `{"id":...,"object":...,"model":...,"choices":[`
	textPre  []byte // head + `{"index":0,"delta":{"content":`
	choices  [maxChoices]choiceState
	usage    []byte // the last usageMetadata, as it came
	started  bool

	// Room for reqModel, usage, and rid, head and textPre, when they
	// fit: a stream's state is one allocation, and its events none.
	modelMem [64]byte
	usageMem [256]byte
	headMem  [384]byte
}

// Scratch of one callback, reused by the callbacks of a warm instance: the
// chunk being assembled and the tape of the event being read.
var (
	chunkBuf = make([]byte, 0, 1<<10)
	evTape   = make([]uint32, 0, 128)
)

// newStreamer returns the state of a stream for a request whose model is
// reqModel (raw JSON, copied).
func newStreamer(reqModel []byte) *streamer {
	s := new(streamer)
	s.reqModel = append(s.modelMem[:0], reqModel...)
	s.usage = s.usageMem[:0]
	return s
}

// responseHead is the Handler's Head: the response's Date header gives created.
func (s *streamer) responseHead(_ *sdk.Stream, r *sdk.Response) error {
	s.created = chatreq.Created(r)
	return nil
}

// end is the Handler's End, at the end of the upstream's body: the usage
// chunk, unless a choice did not finish.
func (s *streamer) end(st *sdk.Stream) error {
	if !s.started {
		return &sdk.HTTPError{Status: 502, Message: "the upstream stream ended without an answer"}
	}
	for i := range s.choices {
		if c := &s.choices[i]; c.used && !c.finished {
			return &sdk.HTTPError{Status: 502, Message: "the upstream stream ended before a finish reason"}
		}
	}
	// Usage is repeated, as running totals, by every event: the last report
	// is kept as bytes and decoded once, here.
	var u usage
	if len(s.usage) > 0 {
		doc, err := st.ParseJSON(s.usage, evTape)
		evTape = doc.Tape
		if err == nil {
			u.read(doc.Root())
		}
	}
	b := append(chunkBuf[:0], s.head...)
	b = append(b, `],"usage":`...)
	b = u.append(b)
	b = append(b, '}')
	chunkBuf = b[:0]
	if err := st.EmitChunk(b); err != nil {
		return err
	}
	return st.Finish()
}

// event is the Handler's Event: one GenerateContentResponse.
func (s *streamer) event(st *sdk.Stream, data []byte) error {
	if st.Ended() {
		return nil // failed by an error event: the rest is not read
	}
	doc, err := st.ParseJSON(data, evTape)
	evTape = doc.Tape
	if err != nil {
		return &sdk.HTTPError{Status: 502, Message: "the upstream sent a malformed stream event"}
	}
	var candidates, feedback, usageV, responseID, modelVersion, errObj rawjson.Value
	for m := doc.Root().Members(); m.Next(); {
		switch string(m.Key()) {
		case "candidates":
			candidates = m.Value()
		case "usageMetadata":
			usageV = m.Value()
		case "promptFeedback":
			feedback = m.Value()
		case "responseId":
			responseID = m.Value()
		case "modelVersion":
			modelVersion = m.Value()
		case "error":
			errObj = m.Value()
		}
	}
	if errObj.Kind() == rawjson.Object {
		code, _ := errObj.Get("code").Int()
		status, _ := errObj.Get("status").Str()
		msg := errObj.Get("message").Raw()
		if len(msg) == 0 {
			msg = []byte(`"the upstream reported an error"`)
		}
		if code < 400 || code > 599 {
			code = 502
		}
		return st.Fail(int(code), openAIError(msg, errorType(string(status), int(code)), status))
	}
	if !s.started {
		s.start(responseID, modelVersion)
	}
	if usageV.Kind() == rawjson.Object {
		s.usage = append(s.usage[:0], usageV.Raw()...)
	}
	i := 0
	for e := candidates.Elements(); e.Next(); i++ {
		if err := s.candidate(st, e.Value(), i); err != nil {
			return err
		}
	}
	if i == 0 {
		if reason, blocked := feedback.Get("blockReason").Str(); blocked && !s.choices[0].finished {
			c := &s.choices[0]
			c.used, c.finished, c.roleSent = true, true, true
			b := append(chunkBuf[:0], s.head...)
			b = append(b, `{"index":0,"delta":{"role":"assistant","content":"","refusal":`...)
			b = blockedRefusal(b, reason)
			b = append(b, `},"logprobs":null,"finish_reason":"content_filter"}]}`...)
			chunkBuf = b[:0]
			return st.EmitChunk(b)
		}
	}
	return nil
}

// start makes the prefix of the stream's chunks from its first event. The
// response id, the prefix and the prefix of choice 0's text chunks share
// headMem while they fit.
func (s *streamer) start(responseID, modelVersion rawjson.Value) {
	s.started = true
	rid, _ := responseID.Str()
	model := s.reqModel
	if modelVersion.Kind() == rawjson.String {
		model = modelVersion.Raw()
	}
	mem := append(s.headMem[:0], rid...)
	s.rid = mem[:len(rid):len(rid)]
	h := append(mem[len(mem):], `{"id":`...)
	h = appendID(h, responseID)
	h = append(h, `,"object":"chat.completion.chunk","created":`...)
	h = strconv.AppendInt(h, s.created, 10)
	h = append(h, `,"model":`...)
	h = append(h, model...)
	h = append(h, `,"choices":[`...)
	s.head = h[:len(h):len(h)]
	s.textPre = append(h, textOpen...)
}

// textOpen follows the prefix in a text chunk of choice 0 after its first.
const textOpen = `{"index":0,"delta":{"content":`

// candidate emits the chunks of one candidate of an event.
func (s *streamer) candidate(st *sdk.Stream, c rawjson.Value, pos int) error {
	idx := int64(pos)
	var parts, finish rawjson.Value
	for m := c.Members(); m.Next(); {
		switch string(m.Key()) {
		case "index":
			if n, ok := m.Value().Int(); ok {
				idx = n
			}
		case "content":
			parts = m.Value().Get("parts")
		case "finishReason":
			finish = m.Value()
		}
	}
	if idx < 0 || idx >= maxChoices {
		return &sdk.HTTPError{Status: 502, Message: "the upstream sent a candidate index out of range"}
	}
	cs := &s.choices[idx]
	cs.used = true
	for e := parts.Elements(); e.Next(); {
		text, call, sig, thought := readPart(e.Value())
		switch {
		case thought:
		case text.Kind() == rawjson.String && len(text.Raw()) > 2:
			if err := s.text(st, cs, idx, text.Raw()); err != nil {
				return err
			}
		case call.Kind() == rawjson.Object:
			name := call.Get("name")
			if name.Kind() != rawjson.String {
				return &sdk.HTTPError{Status: 502, Message: "the upstream sent a function call without a name"}
			}
			args := call.Get("args").Raw()
			if len(args) == 0 {
				args = []byte("{}")
			}
			sg, _ := sig.Str()
			b := s.open(cs, idx)
			b = append(b, `"tool_calls":[`...)
			b = writeCall(b, s.rid, int(idx)*1000+cs.tools, name.Raw(), args, sg, cs.tools)
			b = append(b, ']')
			cs.tools++
			cs.calls = true
			if err := send(st, b, ""); err != nil {
				return err
			}
		}
	}
	if fr, ok := finish.Str(); ok && !cs.finished {
		cs.finished = true
		return send(st, s.open(cs, idx), finishReason(fr, cs.calls))
	}
	return nil
}

// chunkTail ends a chunk whose delta is still open.
const chunkTail = `},"logprobs":null,"finish_reason":null}]}`

// text sends a text delta. Text chunks of choice 0 are most of a stream, so
// after the first their prefix is copied whole: three appends a chunk.
func (s *streamer) text(st *sdk.Stream, cs *choiceState, idx int64, raw []byte) error {
	if idx != 0 || !cs.roleSent {
		b := s.open(cs, idx)
		b = append(b, `"content":`...)
		b = append(b, raw...)
		return send(st, b, "")
	}
	b := append(chunkBuf[:0], s.textPre...)
	b = append(b, raw...)
	b = append(b, chunkTail...)
	chunkBuf = b[:0]
	return st.EmitChunk(b)
}

// open starts a chunk for choice idx in chunkBuf and returns it with its
// delta object open; the role goes into the choice's first chunk.
func (s *streamer) open(cs *choiceState, idx int64) []byte {
	b := append(chunkBuf[:0], s.head...)
	b = append(b, `{"index":`...)
	b = strconv.AppendInt(b, idx, 10)
	b = append(b, `,"delta":{`...)
	if !cs.roleSent {
		cs.roleSent = true
		b = append(b, `"role":"assistant"`...)
		if !cs.finished {
			b = append(b, ',')
		}
	}
	return b
}

// send closes the delta opened by open and emits the chunk.
func send(st *sdk.Stream, b []byte, finish string) error {
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
	return st.EmitChunk(b)
}
