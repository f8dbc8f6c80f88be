package sdk_test

// The tests of this package do not call t.Parallel: the SDK keeps an
// instance's scratch buffers in package variables (a wasm instance runs one
// callback at a time), so two guests must not run callbacks at once.

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// fakeHost is a scripted sdk.Host. It records every call that acts (sends,
// body modes, closes, emits, fails, finishes, image fetches, timers) as one
// line in calls, counts the calls that only read, and answers from its
// fields. It ends a stream on a body, a fail or a finish the way the real
// host does, and refuses what is sent to an ended stream with ENDED.
type fakeHost struct {
	requests map[int32][]byte // request_read, by stream
	config   []byte           // config_read, for every stream
	configs  map[int32][]byte // config_read, by stream (wins over config)
	headers  map[int32]map[string]string

	// Negative values make the host function fail with that status.
	requestStatus int32
	configStatus  int32
	sendStatus    int32
	bodyStatus    int32
	emitStatus    int32
	failStatus    int32
	finishStatus  int32
	timerStatus   int32
	dataStatus    int32
	jsonStatus    int32
	imageStatus   map[string]int32 // by URL

	data       []byte // the current callback's data, for data_read
	nextHandle int32
	ended      map[int32]bool

	calls  []string
	sent   []sentRequest
	reads  map[string]int // request_read, config_read, data_read, http_header, json_tape
	logs   []string
	levels []int32
}

type sentRequest struct {
	stream int32
	handle int32
	head   abi.Head
	body   string
}

func newFakeHost() *fakeHost {
	return &fakeHost{
		requests:    map[int32][]byte{},
		configs:     map[int32][]byte{},
		headers:     map[int32]map[string]string{},
		imageStatus: map[string]int32{},
		ended:       map[int32]bool{},
		reads:       map[string]int{},
		config:      []byte(`{"provider":"fake","base_url":"https://upstream.test/v1","options":{}}`),
		nextHandle:  100,
	}
}

var _ sdk.Host = (*fakeHost)(nil)

func (h *fakeHost) record(format string, args ...any) {
	h.calls = append(h.calls, fmt.Sprintf(format, args...))
}

// take returns the calls recorded since the last take.
func (h *fakeHost) take() []string {
	c := h.calls
	h.calls = nil
	return c
}

func copyOut(buf, src []byte) int32 {
	if len(src) <= cap(buf) {
		copy(buf[:len(src)], src)
	}
	return int32(len(src))
}

func (h *fakeHost) RequestRead(s int32, buf []byte) int32 {
	h.reads["request_read"]++
	if h.requestStatus < 0 {
		return h.requestStatus
	}
	return copyOut(buf, h.requests[s])
}

func (h *fakeHost) ConfigRead(s int32, buf []byte) int32 {
	h.reads["config_read"]++
	if h.configStatus < 0 {
		return h.configStatus
	}
	if c, ok := h.configs[s]; ok {
		return copyOut(buf, c)
	}
	return copyOut(buf, h.config)
}

func (h *fakeHost) HTTPSend(s int32, head, body []byte) int32 {
	hd, err := abi.ParseHead(head)
	if err != nil {
		h.record("http_send %d malformed head %q", s, head)
		return int32(abi.StatusInvalid)
	}
	if h.sendStatus < 0 {
		h.record("http_send %d %s %s refused", s, hd.Method, hd.URL)
		return h.sendStatus
	}
	if h.ended[s] {
		h.record("http_send %d %s %s ended", s, hd.Method, hd.URL)
		return int32(abi.StatusEnded)
	}
	h.nextHandle++
	h.record("http_send %d %s %s -> %d", s, hd.Method, hd.URL, h.nextHandle)
	h.sent = append(h.sent, sentRequest{stream: s, handle: h.nextHandle, head: hd, body: string(body)})
	return h.nextHandle
}

func (h *fakeHost) HTTPBody(handle int32, mode abi.BodyMode) int32 {
	h.record("http_body %d %s", handle, mode)
	return h.bodyStatus
}

func (h *fakeHost) HTTPHeader(handle int32, name, buf []byte) int32 {
	h.reads["http_header"]++
	v, ok := h.headers[handle][strings.ToLower(string(name))]
	if !ok {
		return int32(abi.StatusNotFound)
	}
	return copyOut(buf, []byte(v))
}

func (h *fakeHost) HTTPClose(handle int32) int32 {
	h.record("http_close %d", handle)
	return 0
}

func (h *fakeHost) DataRead(buf []byte) int32 {
	h.reads["data_read"]++
	if h.dataStatus < 0 {
		return h.dataStatus
	}
	if h.data == nil {
		return int32(abi.StatusInvalid)
	}
	return copyOut(buf, h.data)
}

var kindNames = map[abi.Kind]string{abi.KindChunk: "chunk", abi.KindBody: "body", abi.KindUsage: "usage"}

func (h *fakeHost) Emit(s int32, kind abi.Kind, data []byte) int32 {
	if h.emitStatus < 0 {
		h.record("emit %d %s %s refused", s, kindNames[kind], data)
		return h.emitStatus
	}
	if h.ended[s] {
		h.record("emit %d %s %s ended", s, kindNames[kind], data)
		return int32(abi.StatusEnded)
	}
	h.record("emit %d %s %s", s, kindNames[kind], data)
	if kind == abi.KindBody {
		h.ended[s] = true
	}
	return 0
}

func (h *fakeHost) Fail(s int32, status int32, body []byte) int32 {
	if h.failStatus < 0 {
		h.record("fail %d %d %s refused", s, status, body)
		return h.failStatus
	}
	if h.ended[s] {
		h.record("fail %d %d %s ended", s, status, body)
		return int32(abi.StatusEnded)
	}
	h.record("fail %d %d %s", s, status, body)
	h.ended[s] = true
	return 0
}

func (h *fakeHost) Finish(s int32) int32 {
	if h.finishStatus < 0 {
		h.record("finish %d refused", s)
		return h.finishStatus
	}
	if h.ended[s] {
		h.record("finish %d ended", s)
		return int32(abi.StatusEnded)
	}
	h.record("finish %d", s)
	h.ended[s] = true
	return 0
}

func (h *fakeHost) FetchImage(s int32, url []byte) int32 {
	if st := h.imageStatus[string(url)]; st < 0 {
		h.record("fetch_image %d %s refused", s, url)
		return st
	}
	h.nextHandle++
	h.record("fetch_image %d %s -> %d", s, url, h.nextHandle)
	return h.nextHandle
}

func (h *fakeHost) SetTimer(s int32, ms int32) int32 {
	if h.timerStatus < 0 {
		h.record("set_timer %d %d refused", s, ms)
		return h.timerStatus
	}
	h.record("set_timer %d %d", s, ms)
	return 0
}

func (h *fakeHost) JSONTape(data []byte, tape []uint32) int32 {
	h.reads["json_tape"]++
	if h.jsonStatus < 0 {
		return h.jsonStatus
	}
	t, err := rawjson.AppendTape(nil, data)
	if err != nil {
		return int32(abi.StatusMalformed)
	}
	if len(t) <= cap(tape) {
		copy(tape[:len(t)], t)
	}
	return int32(len(t) / rawjson.EntryWords)
}

func (h *fakeHost) Log(level int32, msg []byte) int32 {
	h.logs = append(h.logs, string(msg))
	h.levels = append(h.levels, level)
	return 0
}

// Driving a guest as the host would.

// dataCall runs llmproxy_on_http_data with data as the callback's data.
func (h *fakeHost) dataCall(g *sdk.Guest, stream, handle int32, data string) int32 {
	h.data = []byte(data)
	defer func() { h.data = nil }()
	return g.OnHTTPData(stream, handle, int32(len(data)))
}

// imageCall runs llmproxy_on_image with data ("<type>\n<base64>") as the
// callback's data.
func (h *fakeHost) imageCall(g *sdk.Guest, stream, handle int32, data string) int32 {
	h.data = []byte(data)
	defer func() { h.data = nil }()
	return g.OnImage(stream, handle, int32(len(data)))
}

// respond runs a whole successful exchange: head, one data callback per
// item of data, end.
func (h *fakeHost) respond(g *sdk.Guest, stream, handle, status int32, data ...string) {
	g.OnHTTPHead(stream, handle, status)
	for _, d := range data {
		h.dataCall(g, stream, handle, d)
	}
	g.OnHTTPEnd(stream, handle, 0)
}

// Test plugins.

// each is a Plugin that runs the same function for every operation.
type each func(s *sdk.Stream) error

func (f each) Chat(s *sdk.Stream) error       { return f(s) }
func (f each) ChatStream(s *sdk.Stream) error { return f(s) }
func (f each) Embeddings(s *sdk.Stream) error { return f(s) }
func (f each) Models(s *sdk.Stream) error     { return f(s) }

// sendWith is a plugin that sends one request to the upstream with h.
func sendWith(h sdk.Handler) each {
	return func(s *sdk.Stream) error {
		return s.Send(sdk.Request{Method: "POST", URL: "https://upstream.test/v1/x", Body: []byte(`{}`)}, h)
	}
}

// checkCalls compares the recorded calls with want.
func checkCalls(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("host calls\n got %q\nwant %q", got, want)
	}
}
