package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/plugintest"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
	"github.com/llm-proxy/llm-proxy/sdk/sse"
)

// These tests run several streams on one guest, as an instance serves them
// under ABI 2: a hand-driven host starts them, then delivers their upstream
// answers interleaved, one callback at a time, and each stream must emit
// exactly what it emits when it runs alone (plugintest.Run). State that
// leaked from one stream into another (a message head, content blocks,
// tool numbering, the role flag, usage) would show as a difference.

// fakeBase is the base URL the fake host gives the plugin.
const fakeBase = "https://api.anthropic.test"

// fakeHost is an sdk.Host for many streams of one guest. It answers no
// upstream request by itself: the test delivers the answers with the
// guest's callbacks, in the order it chooses.
type fakeHost struct {
	t       *testing.T
	streams map[int32]*fakeStream
	ups     map[int32]*fakeStream // upstream handle -> its stream
	next    int32
	data    []byte // the current callback's data
}

// fakeStream is one stream: its case, the upstream request the plugin
// sent, how its answer is to be read, and what it emitted.
type fakeStream struct {
	id       int32
	c        *plugintest.Case
	handle   int32 // the upstream request, 0 if none is open
	sent     plugintest.Recorded
	sends    int
	headSent bool
	mode     abi.BodyMode // as the plugin chose in the head callback
	emits    []plugintest.Emit
	finished bool
	ended    bool // answered, finished or failed: no more callbacks but on_done
	done     bool // on_done delivered
	steps    int  // callbacks made
	pending  [][]byte
}

func newFakeHost(t *testing.T) *fakeHost {
	return &fakeHost{t: t, streams: map[int32]*fakeStream{}, ups: map[int32]*fakeStream{}, next: 100}
}

func (h *fakeHost) stream(id int32) *fakeStream {
	st := h.streams[id]
	if st == nil {
		h.t.Errorf("host function called for unknown stream %d", id)
	}
	return st
}

func (h *fakeHost) RequestRead(id int32, buf []byte) int32 {
	if st := h.stream(id); st != nil {
		return copyOut(buf, st.c.Request)
	}
	return int32(abi.StatusInvalid)
}

func (h *fakeHost) ConfigRead(id int32, buf []byte) int32 {
	if h.stream(id) == nil {
		return int32(abi.StatusInvalid)
	}
	return copyOut(buf, []byte(`{"provider":"claude","base_url":"`+fakeBase+`","options":{}}`))
}

func (h *fakeHost) HTTPSend(id int32, head, body []byte) int32 {
	st := h.stream(id)
	if st == nil {
		return int32(abi.StatusInvalid)
	}
	if st.ended {
		return int32(abi.StatusEnded)
	}
	hd, err := abi.ParseHead(head)
	if err != nil {
		return int32(abi.StatusInvalid)
	}
	h.next++
	st.handle, st.sends = h.next, st.sends+1
	st.sent = plugintest.Recorded{Method: hd.Method, Path: strings.TrimPrefix(hd.URL, fakeBase), Body: bytes.Clone(body)}
	h.ups[h.next] = st
	return h.next
}

func (h *fakeHost) HTTPBody(handle int32, mode abi.BodyMode) int32 {
	st := h.ups[handle]
	if st == nil {
		return int32(abi.StatusInvalid)
	}
	st.mode = mode
	return 0
}

func (h *fakeHost) HTTPHeader(handle int32, name, buf []byte) int32 {
	st := h.ups[handle]
	if st == nil {
		return int32(abi.StatusInvalid)
	}
	for _, kv := range st.c.Upstream.Headers {
		if strings.EqualFold(kv[0], string(name)) {
			return copyOut(buf, []byte(kv[1]))
		}
	}
	return int32(abi.StatusNotFound)
}

func (h *fakeHost) HTTPClose(handle int32) int32 {
	st := h.ups[handle]
	if st == nil {
		return int32(abi.StatusInvalid)
	}
	delete(h.ups, handle)
	st.handle = 0
	return 0
}

func (h *fakeHost) DataRead(buf []byte) int32 {
	if h.data == nil {
		return int32(abi.StatusInvalid)
	}
	return copyOut(buf, h.data)
}

func (h *fakeHost) Emit(id int32, kind abi.Kind, data []byte) int32 {
	st := h.stream(id)
	if st == nil {
		return int32(abi.StatusInvalid)
	}
	if st.ended {
		return int32(abi.StatusEnded)
	}
	switch kind {
	case abi.KindChunk:
		st.emits = append(st.emits, plugintest.Emit{Kind: "chunk", Data: bytes.Clone(data)})
	case abi.KindBody:
		st.emits = append(st.emits, plugintest.Emit{Kind: "body", Data: bytes.Clone(data)})
		h.end(st)
	case abi.KindUsage:
		st.emits = append(st.emits, plugintest.Emit{Kind: "usage", Data: bytes.Clone(data)})
	default:
		return int32(abi.StatusInvalid)
	}
	return 0
}

func (h *fakeHost) Fail(id int32, status int32, body []byte) int32 {
	st := h.stream(id)
	if st == nil {
		return int32(abi.StatusInvalid)
	}
	if st.ended {
		return int32(abi.StatusEnded)
	}
	st.emits = append(st.emits, plugintest.Emit{Kind: "fail", Status: int(status), Data: bytes.Clone(body)})
	h.end(st)
	return 0
}

func (h *fakeHost) Finish(id int32) int32 {
	st := h.stream(id)
	if st == nil {
		return int32(abi.StatusInvalid)
	}
	if st.ended {
		return int32(abi.StatusEnded)
	}
	st.finished = true
	h.end(st)
	return 0
}

// end ends a stream as the host does: its upstream request is cancelled
// and nothing more is delivered for it but on_done.
func (h *fakeHost) end(st *fakeStream) {
	st.ended = true
	delete(h.ups, st.handle)
	st.handle = 0
}

func (h *fakeHost) FetchImage(int32, []byte) int32 { return int32(abi.StatusDenied) }
func (h *fakeHost) SetTimer(int32, int32) int32    { return int32(abi.StatusInvalid) }
func (h *fakeHost) Log(_ int32, msg []byte) int32  { h.t.Logf("plugin log: %s", msg); return 0 }

func (h *fakeHost) JSONTape(data []byte, tape []uint32) int32 {
	t, err := rawjson.AppendTape(nil, data)
	if err != nil {
		return int32(abi.StatusMalformed)
	}
	if len(t) <= cap(tape) {
		copy(tape[:len(t)], t)
	}
	return int32(len(t) / rawjson.EntryWords)
}

// step makes the stream's next callback, the one the real host would make
// next for it: on_start, the head of its answer, its body whole or each of
// its events, the end of the body, on_done. It reports false once the
// stream is over.
func (h *fakeHost) step(g *sdk.Guest, st *fakeStream) bool {
	if st.done {
		return false
	}
	defer func() {
		st.steps++
		// A stream that waits for nothing and has no answer is ended by
		// the host, as plugintest does.
		if !st.ended && st.handle == 0 {
			st.emits = append(st.emits, plugintest.Emit{Kind: "abort", Data: []byte("the plugin left the stream without an answer")})
			h.end(st)
		}
	}()
	switch {
	case st.ended:
		st.done = true
		g.OnDone(st.id, 0)
	case st.steps == 0:
		g.OnStart(st.id, int32(st.c.Op))
	case !st.headSent:
		st.headSent, st.mode = true, abi.BodyWhole
		g.OnHTTPHead(st.id, st.handle, int32(st.c.Upstream.Status))
		body := bytes.ReplaceAll(st.c.Upstream.Body, []byte("<<flush>>"), nil)
		switch {
		case st.mode == abi.BodyRelay && st.c.Op.Streams():
			// The host sends each event to the client itself, then
			// tells the guest the body ended.
			for _, ev := range events(body) {
				h.Emit(st.id, abi.KindChunk, ev)
			}
		case st.mode == abi.BodyRelay:
			h.Emit(st.id, abi.KindBody, body)
		case st.mode == abi.BodyEvents:
			st.pending = events(body)
		default:
			st.pending = [][]byte{body}
		}
	case len(st.pending) > 0:
		h.data, st.pending = st.pending[0], st.pending[1:]
		g.OnHTTPData(st.id, st.handle, int32(len(h.data)))
		h.data = nil
	default:
		handle := st.handle
		delete(h.ups, handle)
		st.handle = 0
		g.OnHTTPEnd(st.id, handle, 0)
	}
	return true
}

// events splits an SSE body into the data of its events, as the host does.
func events(body []byte) [][]byte {
	var p sse.Parser
	p.Feed(body)
	var out [][]byte
	for {
		ev, ok := p.Next()
		if !ok {
			ev, ok = p.Flush()
		}
		if !ok {
			return out
		}
		out = append(out, bytes.Clone(ev.Data))
	}
}

// alone runs a case by itself through plugintest, with a real loopback
// upstream, and returns what it emitted and the upstream request.
func alone(t *testing.T, c *plugintest.Case) (*plugintest.Result, plugintest.Recorded) {
	t.Helper()
	u := c.StartUpstream()
	defer u.Close()
	res := plugintest.Run(plugin{}, c.Op, c.Request, plugintest.Options{
		Provider: "claude", BaseURL: u.URL, Auth: manifest(t).Auth, Secret: "test-key",
	})
	var rec plugintest.Recorded
	if reqs := u.Requests(); len(reqs) == 1 {
		rec = reqs[0]
	}
	return res, rec
}

// interleave runs the cases as streams 1, 2, ... of one guest. Stream i
// starts at round i*stagger; in each round every started stream makes one
// callback, in the order of the cases, or reversed in odd rounds when
// flip is set. It checks each against its lone run.
func interleave(t *testing.T, cases []*plugintest.Case, stagger int, flip bool) {
	t.Helper()
	h := newFakeHost(t)
	g := sdk.NewGuest(h, plugin{})
	all := make([]*fakeStream, len(cases))
	for i, c := range cases {
		all[i] = &fakeStream{id: int32(i + 1), c: c}
		h.streams[all[i].id] = all[i]
	}
	for round := 0; ; round++ {
		order := all
		if flip && round%2 == 1 {
			order = make([]*fakeStream, len(all))
			for i, st := range all {
				order[len(all)-1-i] = st
			}
		}
		busy := false
		for _, st := range order {
			if int(st.id-1)*stagger > round {
				busy = true
				continue
			}
			if h.step(g, st) {
				busy = true
			}
		}
		if !busy {
			break
		}
		if round > 10000 {
			t.Fatal("the streams do not end")
		}
	}
	if n := g.Streams(); n != 0 {
		t.Errorf("the guest still holds %d streams", n)
	}
	for _, st := range all {
		res, sent := alone(t, st.c)
		name := fmt.Sprintf("stream %d (%s)", st.id, st.c.Name)
		if got, want := emitLines(st.emits), emitLines(res.Emits); got != want {
			t.Errorf("%s emitted, interleaved:\n%s\nalone:\n%s", name, got, want)
		}
		if st.finished != res.Finished {
			t.Errorf("%s finished %v interleaved, %v alone", name, st.finished, res.Finished)
		}
		if sent.Method == "" {
			if st.sends != 0 {
				t.Errorf("%s sent %d upstream requests interleaved, none alone", name, st.sends)
			}
			continue
		}
		if st.sends != 1 || st.sent.Method != sent.Method || st.sent.Path != sent.Path || !bytes.Equal(st.sent.Body, sent.Body) {
			t.Errorf("%s sent upstream, interleaved:\n%d %s %s %s\nalone:\n%s %s %s", name,
				st.sends, st.sent.Method, st.sent.Path, st.sent.Body, sent.Method, sent.Path, sent.Body)
		}
	}
}

func emitLines(emits []plugintest.Emit) string {
	var b strings.Builder
	for _, e := range emits {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func loadCase(t *testing.T, name string) *plugintest.Case {
	t.Helper()
	cases, err := plugintest.LoadCases("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no case %s", name)
	return nil
}

// TestTwoStreamsInterleaved: two streamed answers, a text one and one with
// thinking and two tool calls, delivered event by event in turn to one
// guest. Their messages differ in id, model, Date, usage and content
// blocks (index 0 is text in one and thinking in the other), so any state
// the two streams shared would change what one of them emits.
func TestTwoStreamsInterleaved(t *testing.T) {
	text := loadCase(t, "stream_text_split_events")
	tools := loadCase(t, "stream_tool_calls")
	// A Date of its own, so created tells the streams apart too.
	for i, kv := range tools.Upstream.Headers {
		if strings.EqualFold(kv[0], "Date") {
			tools.Upstream.Headers[i][1] = "Wed, 15 Nov 2023 09:00:00 GMT"
		}
	}
	for _, tt := range []struct {
		name    string
		stagger int
		flip    bool
	}{
		{"in step", 0, false},
		{"in step, order flipped", 0, true},
		{"second starts later", 3, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			interleave(t, []*plugintest.Case{text, tools}, tt.stagger, tt.flip)
		})
		t.Run(tt.name+", swapped", func(t *testing.T) {
			interleave(t, []*plugintest.Case{tools, text}, tt.stagger, tt.flip)
		})
	}
}

// TestAllCasesInterleaved runs every golden case at once on one guest:
// streams, whole answers, upstream errors and refused requests, one
// callback of each in turn.
func TestAllCasesInterleaved(t *testing.T) {
	cases, err := plugintest.LoadCases("testdata")
	if err != nil {
		t.Fatal(err)
	}
	interleave(t, cases, 0, false)
	interleave(t, cases, 1, true)
}
