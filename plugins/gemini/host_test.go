package main

import (
	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/plugintest"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// fakeHost is an in-memory sdk.Host for tests that drive a Guest's
// callbacks themselves: the benchmarks, which must not measure net/http,
// and the test of interleaved streams, which plugintest (one stream a run)
// cannot play. Streams are numbered from 1 and must stay below
// len(fakeHost.streams); upstream handles are numbered from 1 too. It does
// not allocate once warm unless it records.
type fakeHost struct {
	config  []byte
	date    []byte // the Date header of the answers whose head comes next
	streams [8]fakeStream
	ups     []fakeUpstream // by handle-1
	data    []byte         // the current callback's data
	record  bool           // keep emits and sent requests, else count them
}

type fakeStream struct {
	request  []byte
	emits    []plugintest.Emit
	sent     []string // "METHOD URL\n\nbody" of each upstream request
	count    int      // emits, when not recording
	finished bool
	failed   bool
	ended    bool
}

type fakeUpstream struct {
	stream int32
	mode   abi.BodyMode
	open   bool
	date   []byte // its Date header
}

func copyOut(buf, src []byte) int32 {
	if len(src) <= cap(buf) {
		copy(buf[:len(src)], src)
	}
	return int32(len(src))
}

func (h *fakeHost) stream(id int32) *fakeStream {
	if id <= 0 || int(id) >= len(h.streams) {
		return nil
	}
	return &h.streams[id]
}

// reset starts stream id afresh with request.
func (h *fakeHost) reset(id int32, request []byte) {
	st := h.stream(id)
	*st = fakeStream{request: request, emits: st.emits[:0], sent: st.sent[:0]}
}

func (h *fakeHost) RequestRead(s int32, buf []byte) int32 {
	st := h.stream(s)
	if st == nil {
		return int32(abi.StatusInvalid)
	}
	return copyOut(buf, st.request)
}

func (h *fakeHost) ConfigRead(s int32, buf []byte) int32 { return copyOut(buf, h.config) }

func (h *fakeHost) HTTPSend(s int32, head, body []byte) int32 {
	st := h.stream(s)
	if st == nil || st.ended {
		return int32(abi.StatusEnded)
	}
	if h.record {
		hd, err := abi.ParseHead(head)
		if err != nil {
			return int32(abi.StatusInvalid)
		}
		st.sent = append(st.sent, hd.Method+" "+hd.URL+"\n\n"+string(body))
	}
	h.ups = append(h.ups, fakeUpstream{stream: s, open: true})
	return int32(len(h.ups))
}

func (h *fakeHost) upstream(handle int32) *fakeUpstream {
	if handle <= 0 || int(handle) > len(h.ups) {
		return nil
	}
	return &h.ups[handle-1]
}

func (h *fakeHost) HTTPBody(handle int32, mode abi.BodyMode) int32 {
	u := h.upstream(handle)
	if u == nil {
		return int32(abi.StatusInvalid)
	}
	u.mode = mode
	return 0
}

func (h *fakeHost) HTTPHeader(handle int32, name, buf []byte) int32 {
	u := h.upstream(handle)
	if u == nil {
		return int32(abi.StatusInvalid)
	}
	if string(name) != "Date" || u.date == nil {
		return int32(abi.StatusNotFound)
	}
	return copyOut(buf, u.date)
}

func (h *fakeHost) HTTPClose(handle int32) int32 {
	if u := h.upstream(handle); u != nil {
		u.open = false
	}
	return 0
}

func (h *fakeHost) DataRead(buf []byte) int32 {
	if h.data == nil {
		return int32(abi.StatusInvalid)
	}
	return copyOut(buf, h.data)
}

func (h *fakeHost) add(s int32, e plugintest.Emit) int32 {
	st := h.stream(s)
	if st == nil || st.ended {
		return int32(abi.StatusEnded)
	}
	if h.record {
		e.Data = append([]byte(nil), e.Data...)
		st.emits = append(st.emits, e)
	} else {
		st.count++
	}
	return 0
}

func (h *fakeHost) Emit(s int32, kind abi.Kind, data []byte) int32 {
	k := "chunk"
	switch kind {
	case abi.KindBody:
		k = "body"
	case abi.KindUsage:
		k = "usage"
	}
	r := h.add(s, plugintest.Emit{Kind: k, Data: data})
	if r == 0 && kind == abi.KindBody {
		h.stream(s).ended = true
	}
	return r
}

func (h *fakeHost) Fail(s int32, status int32, body []byte) int32 {
	r := h.add(s, plugintest.Emit{Kind: "fail", Status: int(status), Data: body})
	if r == 0 {
		st := h.stream(s)
		st.ended, st.failed = true, true
	}
	return r
}

func (h *fakeHost) Finish(s int32) int32 {
	st := h.stream(s)
	if st == nil || st.ended {
		return int32(abi.StatusEnded)
	}
	st.ended, st.finished = true, true
	return 0
}

func (h *fakeHost) FetchImage(s int32, url []byte) int32 { return int32(abi.StatusDenied) }
func (h *fakeHost) SetTimer(s int32, ms int32) int32     { return int32(abi.StatusInvalid) }
func (h *fakeHost) Log(int32, []byte) int32              { return 0 }

func (h *fakeHost) JSONTape(data []byte, tape []uint32) int32 {
	t, err := rawjson.AppendTape(tape[:0], data)
	if err != nil {
		return int32(abi.StatusMalformed)
	}
	return int32(len(t) / rawjson.EntryWords)
}

// Driving a guest the way the real host does, one callback at a time.

// start starts stream id with op and returns the handle of the upstream
// request it sent, or 0.
func (h *fakeHost) start(g *sdk.Guest, id int32, op abi.Op, request []byte) int32 {
	h.reset(id, request)
	n := len(h.ups)
	g.OnStart(id, int32(op))
	if len(h.ups) == n+1 {
		return int32(len(h.ups))
	}
	return 0
}

// head delivers the head of handle's answer, with h.date as its Date, and
// returns the body mode the plugin chose.
func (h *fakeHost) head(g *sdk.Guest, handle, status int32) abi.BodyMode {
	u := h.upstream(handle)
	u.date = h.date
	g.OnHTTPHead(u.stream, handle, status)
	return u.mode
}

// deliver hands one event, or a whole body, of handle's answer to the guest.
func (h *fakeHost) deliver(g *sdk.Guest, handle int32, data []byte) {
	u := h.upstream(handle)
	if !u.open || h.streams[u.stream].ended {
		return
	}
	h.data = data
	g.OnHTTPData(u.stream, handle, int32(len(data)))
	h.data = nil
}

// end ends handle's body normally, then, if the stream is over, tells the
// guest it is done.
func (h *fakeHost) end(g *sdk.Guest, handle int32) {
	u := h.upstream(handle)
	st := &h.streams[u.stream]
	if u.open && !st.ended {
		u.open = false
		g.OnHTTPEnd(u.stream, handle, 0)
	}
	h.done(g, u.stream)
}

// done delivers on_done for a stream that ended.
func (h *fakeHost) done(g *sdk.Guest, id int32) {
	if h.streams[id].ended {
		g.OnDone(id, int32(abi.StatusOK))
	}
}
