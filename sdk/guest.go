package sdk

import (
	"errors"
	"runtime/debug"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// Guest is the state of one plugin instance: its open streams, upstream
// requests and image fetches. Its On methods are the ABI's callbacks
// (abi.Exports), each run to completion. A wasm build has one Guest, whose
// methods the module's exports call; sdk/plugintest makes one per run with
// a native Host. A Guest is not safe for concurrent use, and neither are
// plugins: an instance runs one callback at a time.
type Guest struct {
	host    Host
	plugin  Plugin
	streams map[int32]*Stream
	ups     map[int32]*upstream
	images  map[int32]imageSlot
	seq     uint64  // callbacks begun, so a stream knows whether its cached request is this callback's
	cur     *Stream // the stream of the callback being run
}

// NewGuest returns the state of a fresh instance serving p through h.
func NewGuest(h Host, p Plugin) *Guest {
	return &Guest{host: h, plugin: p, streams: map[int32]*Stream{}, ups: map[int32]*upstream{}, images: map[int32]imageSlot{}}
}

// OnStart is llmproxy_on_start: stream starts an operation of the plugin.
func (g *Guest) OnStart(stream, op int32) int32 {
	if g.plugin == nil {
		return 1 // nothing registered: the module cannot serve
	}
	s := &Stream{g: g, id: stream, op: abi.Op(op)}
	g.streams[stream] = s
	g.begin(s)
	defer g.end()
	var err error
	switch s.op {
	case abi.OpChat:
		err = g.plugin.Chat(s)
	case abi.OpChatStream:
		err = g.plugin.ChatStream(s)
	case abi.OpEmbeddings:
		err = g.plugin.Embeddings(s)
	case abi.OpModels:
		err = g.plugin.Models(s)
	case abi.OpMessages, abi.OpMessagesStream:
		err = ErrUnsupported
		if m, ok := g.plugin.(MessagesPlugin); ok {
			err = m.Messages(s)
		}
	default:
		err = &HTTPError{Status: 400, Message: "unknown operation"}
	}
	s.check(err)
	return 0
}

// OnHTTPHead is llmproxy_on_http_head: the head of an upstream response
// arrived. The SDK chooses the body mode from the Handler and the status.
func (g *Guest) OnHTTPHead(stream, handle, status int32) int32 {
	u := g.ups[handle]
	if u == nil || u.s.id != stream {
		return 0
	}
	u.resp.StatusCode = int(status)
	u.ok = status >= 200 && status <= 299
	u.mode = abi.BodyWhole
	if u.ok {
		switch {
		case u.h.Relay:
			u.mode = abi.BodyRelay
		case u.h.Event != nil:
			u.mode = abi.BodyEvents
		}
	}
	g.begin(u.s)
	defer g.end()
	if u.ok && u.h.Head != nil {
		if err := u.h.Head(u.s, &u.resp); err != nil {
			u.s.check(err)
			return 0
		}
	}
	if r := g.host.HTTPBody(handle, u.mode); r < 0 {
		u.s.check(statusErr("http_body", r))
	}
	return 0
}

// OnHTTPData is llmproxy_on_http_data: an event (BodyEvents) or the whole
// body (BodyWhole) of an upstream response arrived.
func (g *Guest) OnHTTPData(stream, handle, n int32) int32 {
	u := g.ups[handle]
	if u == nil || u.s.id != stream || u.done {
		return 0
	}
	g.begin(u.s)
	defer g.end()
	u.s.check(u.data(n))
	return 0
}

func (u *upstream) data(n int32) error {
	data, err := u.s.g.readData(n)
	if err != nil {
		return err
	}
	if !u.ok {
		// The error handler answers the stream; End is not called.
		u.done = true
		if u.h.Error != nil {
			return u.h.Error(u.s, &u.resp, data)
		}
		return u.s.FailUpstream(&u.resp, data)
	}
	if u.mode == abi.BodyEvents {
		if string(data) == "[DONE]" {
			// OpenAI's end of stream: the rest of the body is not read.
			u.done = true
			u.s.g.closeUpstream(u)
			return u.end()
		}
		return u.h.Event(u.s, data)
	}
	if u.h.Body != nil {
		return u.h.Body(u.s, &u.resp, data)
	}
	return nil
}

// OnHTTPEnd is llmproxy_on_http_end: an upstream request ended, at the end
// of its body (status 0) or failed (a negative abi.Status).
func (g *Guest) OnHTTPEnd(stream, handle, status int32) int32 {
	u := g.ups[handle]
	if u == nil || u.s.id != stream {
		return 0
	}
	g.forget(u)
	if u.done {
		return 0
	}
	u.done = true
	g.begin(u.s)
	defer g.end()
	switch {
	case status < 0:
		op := "http_read"
		if u.resp.StatusCode == 0 {
			op = "http_send"
		}
		u.s.check(statusErr(op, status))
	case !u.ok:
		// A non-2xx answer has its body delivered first (an empty one
		// too), which answers the stream; this is a host that did not.
		u.s.check(u.s.FailUpstream(&u.resp, nil))
	default:
		u.s.check(u.end())
	}
	return 0
}

// OnTimer is llmproxy_on_timer: the stream's timer fired.
func (g *Guest) OnTimer(stream int32) int32 {
	s := g.streams[stream]
	if s == nil || s.timer == nil {
		return 0
	}
	fn := s.timer
	s.timer = nil
	g.begin(s)
	defer g.end()
	s.check(fn(s))
	return 0
}

// OnDone is llmproxy_on_done: the stream is over; its state is dropped.
func (g *Guest) OnDone(stream, reason int32) int32 {
	s := g.streams[stream]
	if s == nil {
		return 0
	}
	delete(g.streams, stream)
	s.ended = true
	for _, h := range s.handles {
		delete(g.ups, h)
		delete(g.images, h)
	}
	s.handles = nil
	s.timer = nil
	return 0
}

// Streams returns the number of streams the guest holds (for tests).
func (g *Guest) Streams() int { return len(g.streams) }

// begin starts a callback for s; the callback defers end, which turns a
// panic into the stream's failure. A panic costs only its own stream: the
// instance keeps serving the others.
func (g *Guest) begin(s *Stream) {
	g.seq++
	g.cur = s
}

func (g *Guest) end() {
	s := g.cur
	g.cur = nil
	if r := recover(); r != nil {
		msg := "plugin panic: " + panicText(r)
		g.host.Log(abi.LogError, []byte(msg+"\n"+string(debug.Stack())))
		if s != nil && !s.ended {
			_ = s.Fail(502, []byte(msg))
		}
	}
}

// check turns an error a plugin's function returned into the stream's
// failure, unless the stream has already ended.
func (s *Stream) check(err error) {
	if err != nil && !s.ended {
		s.failWith(err)
	}
}

func panicText(r any) string {
	switch v := r.(type) {
	case error:
		return v.Error()
	case string:
		return v
	case interface{ String() string }:
		return v.String()
	}
	return "a value that is not an error"
}

// dataBuf receives the data of llmproxy_on_http_data and llmproxy_on_image;
// it is reused from callback to callback.
var dataBuf = make([]byte, 0, 16<<10)

// readData copies the current callback's n bytes of data out of the host.
func (g *Guest) readData(n int32) ([]byte, error) {
	if n < 0 {
		return nil, statusErr("data_read", n)
	}
	if int(n) > cap(dataBuf) {
		dataBuf = make([]byte, 0, n)
	}
	r := g.host.DataRead(dataBuf[:0:cap(dataBuf)])
	if r < 0 {
		return nil, statusErr("data_read", r)
	}
	if int(r) > cap(dataBuf) {
		return nil, &StatusError{Op: "data_read", Status: abi.StatusInvalid}
	}
	return dataBuf[:r], nil
}

// failWith reports an error returned by a plugin's function.
func (s *Stream) failWith(err error) {
	var he *HTTPError
	var se *StatusError
	switch {
	case errors.Is(err, ErrClientGone), errors.Is(err, ErrEnded):
		return
	case errors.Is(err, ErrUnsupported):
		_ = s.Fail(400, []byte(err.Error()))
	case errors.As(err, &he):
		_ = s.Fail(he.Status, []byte(he.Message))
	case errors.As(err, &se):
		status := 502
		switch se.Status {
		case abi.StatusTimeout:
			status = 504
		case abi.StatusInvalid:
			status = 500
		}
		_ = s.Fail(status, []byte(se.Error()))
	default:
		_ = s.Fail(502, []byte(err.Error()))
	}
}
