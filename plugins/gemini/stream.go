package main

import (
	"io"
	"strconv"

	"github.com/llm-proxy/llm-proxy/sdk"
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
//	an error object            the call fails with its status and message
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

type streamer struct {
	c        *sdk.Call
	created  int64
	reqModel []byte
	rid      []byte // the response id's raw content
	head     []byte // `{"id":...,"object":...,"model":...,"choices":[`
	textPre  []byte // head + `{"index":0,"delta":{"content":`
	buf      []byte
	choices  [maxChoices]choiceState
	usage    []byte // the last usageMetadata, as it came
	started  bool
}

// Buffers reused across the calls of a warm instance.
var (
	headBuf  = make([]byte, 0, 256)
	chunkBuf = make([]byte, 0, 1<<10)
	ridBuf   = make([]byte, 0, 64)
	usageBuf = make([]byte, 0, 256)
	preBuf   = make([]byte, 0, 256)
	evTape   = make([]uint32, 0, 128)
)

func translateStream(c *sdk.Call, resp *sdk.Response, created int64, reqModel []byte) error {
	s := &streamer{c: c, created: created, reqModel: reqModel, head: headBuf[:0], buf: chunkBuf[:0], rid: ridBuf[:0], usage: usageBuf[:0], textPre: preBuf[:0]}
	defer func() {
		headBuf, chunkBuf, ridBuf, usageBuf, preBuf = s.head[:0], s.buf[:0], s.rid[:0], s.usage[:0], s.textPre[:0]
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
	if !s.started {
		return &sdk.HTTPError{Status: 502, Message: "the upstream stream ended without an answer"}
	}
	for i := range s.choices {
		if st := &s.choices[i]; st.used && !st.finished {
			return &sdk.HTTPError{Status: 502, Message: "the upstream stream ended before a finish reason"}
		}
	}
	// Usage is repeated, as running totals, by every event: the last report
	// is kept as bytes and decoded once, here.
	var u usage
	if len(s.usage) > 0 {
		doc, err := s.c.ParseJSON(s.usage, evTape)
		evTape = doc.Tape
		if err == nil {
			u.read(doc.Root())
		}
	}
	b := append(s.buf[:0], s.head...)
	b = append(b, `],"usage":`...)
	b = u.append(b)
	b = append(b, '}')
	s.buf = b
	return s.c.EmitChunk(b)
}

func (s *streamer) event(data []byte) (done bool, err error) {
	doc, err := s.c.ParseJSON(data, evTape)
	evTape = doc.Tape
	if err != nil {
		return false, &sdk.HTTPError{Status: 502, Message: "the upstream sent a malformed stream event"}
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
		return true, s.c.Fail(int(code), openAIError(msg, errorType(string(status), int(code)), status))
	}
	if !s.started {
		s.start(responseID, modelVersion)
	}
	if usageV.Kind() == rawjson.Object {
		s.usage = append(s.usage[:0], usageV.Raw()...)
	}
	i := 0
	for e := candidates.Elements(); e.Next(); i++ {
		if err := s.candidate(e.Value(), i); err != nil {
			return false, err
		}
	}
	if i == 0 {
		if reason, blocked := feedback.Get("blockReason").Str(); blocked && !s.choices[0].finished {
			st := &s.choices[0]
			st.used, st.finished, st.roleSent = true, true, true
			b := append(s.buf[:0], s.head...)
			b = append(b, `{"index":0,"delta":{"role":"assistant","content":"","refusal":`...)
			b = blockedRefusal(b, reason)
			b = append(b, `},"logprobs":null,"finish_reason":"content_filter"}]}`...)
			s.buf = b
			return false, s.c.EmitChunk(b)
		}
	}
	return false, nil
}

func (s *streamer) start(responseID, modelVersion rawjson.Value) {
	s.started = true
	if rid, ok := responseID.Str(); ok {
		s.rid = append(s.rid[:0], rid...)
	}
	h := append(s.head[:0], `{"id":`...)
	h = appendID(h, responseID)
	h = append(h, `,"object":"chat.completion.chunk","created":`...)
	h = strconv.AppendInt(h, s.created, 10)
	h = append(h, `,"model":`...)
	if modelVersion.Kind() == rawjson.String {
		h = append(h, modelVersion.Raw()...)
	} else {
		h = append(h, s.reqModel...)
	}
	h = append(h, `,"choices":[`...)
	s.head = h
}

// candidate emits the chunks of one candidate of an event.
func (s *streamer) candidate(c rawjson.Value, pos int) error {
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
	st := &s.choices[idx]
	st.used = true
	for e := parts.Elements(); e.Next(); {
		text, call, sig, thought := readPart(e.Value())
		switch {
		case thought:
		case text.Kind() == rawjson.String && len(text.Raw()) > 2:
			if err := s.text(st, idx, text.Raw()); err != nil {
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
			b := s.open(st, idx)
			b = append(b, `"tool_calls":[`...)
			b = writeCall(b, s.rid, int(idx)*1000+st.tools, name.Raw(), args, sg, st.tools)
			b = append(b, ']')
			st.tools++
			st.calls = true
			if err := s.send(b, ""); err != nil {
				return err
			}
		}
	}
	if fr, ok := finish.Str(); ok && !st.finished {
		st.finished = true
		return s.send(s.open(st, idx), finishReason(fr, st.calls))
	}
	return nil
}

// chunkTail ends a chunk whose delta is still open.
const chunkTail = `},"logprobs":null,"finish_reason":null}]}`

// text sends a text delta. Text chunks of choice 0 are most of a stream, so
// after the first their prefix is copied whole: three appends a chunk.
func (s *streamer) text(st *choiceState, idx int64, raw []byte) error {
	if idx != 0 || !st.roleSent {
		b := s.open(st, idx)
		b = append(b, `"content":`...)
		b = append(b, raw...)
		return s.send(b, "")
	}
	if len(s.textPre) == 0 {
		s.textPre = append(append(s.textPre[:0], s.head...), `{"index":0,"delta":{"content":`...)
	}
	b := append(s.buf[:0], s.textPre...)
	b = append(b, raw...)
	b = append(b, chunkTail...)
	s.buf = b
	return s.c.EmitChunk(b)
}

// open starts a chunk for choice idx and returns it with its delta object
// open; the role goes into the choice's first chunk.
func (s *streamer) open(st *choiceState, idx int64) []byte {
	b := append(s.buf[:0], s.head...)
	b = append(b, `{"index":`...)
	b = strconv.AppendInt(b, idx, 10)
	b = append(b, `,"delta":{`...)
	if !st.roleSent {
		st.roleSent = true
		b = append(b, `"role":"assistant"`...)
		if !st.finished {
			b = append(b, ',')
		}
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
