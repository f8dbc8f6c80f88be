// Package plugintest runs a plugin natively, without wasm, against a host
// that behaves like LLM Proxy's: it serves the request and config, sends
// upstream requests with net/http (adding the declared credentials), parses
// event streams, relays, fetches images, fires timers, and calls the
// plugin's callbacks one at a time in the order the real host would,
// recording what the plugin emits. A plugin author tests translation logic
// with plain `go test`, then runs the same cases (see Case) against the
// built .wasm under the real host.
package plugintest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
	"github.com/llm-proxy/llm-proxy/sdk/sse"
)

// Options describe the provider the plugin serves in a run.
type Options struct {
	Provider string
	BaseURL  string
	Options  map[string]any
	Auth     abi.Auth
	Secret   string
	// Client sends upstream requests and fetches images; nil means
	// http.DefaultClient.
	Client *http.Client
	// Context bounds the run; nil means a minute.
	Context context.Context
}

// Emit is one thing the plugin sent to the host.
type Emit struct {
	Kind   string // "chunk", "body", "usage", "fail" or "abort"
	Status int    // for "fail"
	Data   []byte
}

func (e Emit) String() string {
	if e.Kind == "fail" {
		return fmt.Sprintf("fail %d %s", e.Status, e.Data)
	}
	return e.Kind + " " + string(e.Data)
}

// Result is what a run produced.
type Result struct {
	// Ret is the first non-zero value a callback returned (a module with no
	// plugin registered returns 1), or 0.
	Ret   int32
	Emits []Emit
	Logs  []string
	// Finished reports that the plugin ended a chat_stream with Finish.
	Finished bool
	// Callbacks counts the callbacks the run made, on_done included.
	Callbacks int
}

// runMu serialises runs: like a wasm instance, the SDK keeps scratch
// buffers in package variables, so tests that run plugins in parallel take
// turns here.
var runMu sync.Mutex

// The stream id of a run; the real host numbers streams per instance too.
const streamID = 1

// Run performs one operation of p natively, from its start to the end of
// the stream, and returns what it emitted. It is safe to call from
// parallel tests; runs take turns. If the plugin leaves the stream with
// nothing to wait for and no answer, the run ends as the host would end it:
// with an "abort" emit.
func Run(p sdk.Plugin, op abi.Op, request []byte, o Options) *Result {
	runMu.Lock()
	defer runMu.Unlock()
	ctx := o.Context
	if ctx == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	h := &Host{opts: o, request: request, ctx: ctx, cancel: cancel, op: op,
		events: make(chan func(), 64), ups: map[int32]*upstream{}, images: map[int32]bool{}}
	h.g = sdk.NewGuest(h, p)
	defer h.close()
	h.call(func() int32 { return h.g.OnStart(streamID, int32(op)) })
	for !h.over() {
		select {
		case fn := <-h.events:
			fn()
		case <-ctx.Done():
			h.endStream("abort", 0, []byte("the run's context ended: "+ctx.Err().Error()), abi.StatusTimeout)
		}
	}
	return &h.res
}

// Host implements sdk.Host natively for one stream. Its methods are called
// by the plugin during callbacks, on Run's goroutine.
type Host struct {
	opts    Options
	request []byte
	op      abi.Op
	ctx     context.Context
	cancel  context.CancelFunc
	g       *sdk.Guest
	res     Result

	events chan func() // work for Run's goroutine, posted by the upstream goroutines

	ups        map[int32]*upstream
	images     map[int32]bool
	timer      *time.Timer
	next       int32
	data       []byte // the current callback's data
	ended      bool
	doneReason abi.Status
	doneSent   bool
	wg         sync.WaitGroup
}

type upstream struct {
	cancel context.CancelFunc
	resp   *http.Response
	mode   abi.BodyMode
	inHead bool
	modeCh chan abi.BodyMode
}

// call runs one callback and the checks the host makes after it.
func (h *Host) call(fn func() int32) {
	h.res.Callbacks++
	if r := fn(); r != 0 && h.res.Ret == 0 {
		h.res.Ret = r
	}
	if !h.ended && len(h.ups) == 0 && len(h.images) == 0 && h.timer == nil {
		h.endStream("abort", 0, []byte("the plugin left the stream without an answer"), abi.StatusAborted)
	}
}

// over delivers on_done once the stream ended and reports whether the run
// is complete.
func (h *Host) over() bool {
	if !h.ended {
		return false
	}
	if !h.doneSent {
		h.doneSent = true
		reason := h.doneReason
		h.res.Callbacks++
		h.g.OnDone(streamID, int32(reason))
	}
	return true
}

// post hands fn to Run's goroutine; false once the run is over.
func (h *Host) post(fn func()) bool {
	select {
	case h.events <- fn:
		return true
	case <-h.ctx.Done():
		return false
	}
}

func (h *Host) close() {
	h.cancel()
	if h.timer != nil {
		h.timer.Stop()
	}
	for _, u := range h.ups {
		u.cancel()
	}
	h.wg.Wait()
}

// endStream records how the stream ended and cancels what it had open.
func (h *Host) endStream(kind string, status int, data []byte, reason abi.Status) {
	if h.ended {
		return
	}
	h.ended = true
	h.doneReason = reason
	if kind != "" {
		h.res.Emits = append(h.res.Emits, Emit{Kind: kind, Status: status, Data: data})
	}
	for k, u := range h.ups {
		u.cancel()
		delete(h.ups, k)
	}
	clear(h.images)
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
}

func copyOut(buf, src []byte) int32 {
	if len(src) <= cap(buf) {
		copy(buf[:len(src)], src)
	}
	return int32(len(src))
}

func (h *Host) RequestRead(s int32, buf []byte) int32 {
	if s != streamID {
		return int32(abi.StatusInvalid)
	}
	return copyOut(buf, h.request)
}

func (h *Host) ConfigRead(s int32, buf []byte) int32 {
	if s != streamID {
		return int32(abi.StatusInvalid)
	}
	opts := h.opts.Options
	if opts == nil {
		opts = map[string]any{}
	}
	b, _ := json.Marshal(map[string]any{
		"provider": h.opts.Provider,
		"base_url": strings.TrimRight(h.opts.BaseURL, "/"),
		"options":  opts,
	})
	return copyOut(buf, b)
}

// maxHandles is the host's default max_http_handles.
const maxHandles = 8

func (h *Host) HTTPSend(s int32, head, body []byte) int32 {
	if s != streamID {
		return int32(abi.StatusInvalid)
	}
	if h.ended {
		return int32(abi.StatusEnded)
	}
	hd, err := abi.ParseHead(head)
	if err != nil {
		return int32(abi.StatusInvalid)
	}
	if len(h.ups) >= maxHandles {
		return int32(abi.StatusLimit)
	}
	h.next++
	handle := h.next
	u, err2 := url.Parse(hd.URL)
	base, _ := url.Parse(h.opts.BaseURL)
	if err2 != nil || base == nil || u.Host != base.Host {
		// Refused like the real host: the request fails, asynchronously.
		h.ups[handle] = &upstream{cancel: func() {}}
		h.post2(func() { h.httpEnd(handle, abi.StatusDenied) })
		return handle
	}
	ctx, cancel := context.WithCancel(h.ctx)
	req, err := http.NewRequestWithContext(ctx, hd.Method, hd.URL, strings.NewReader(string(body)))
	if err != nil {
		cancel()
		return int32(abi.StatusInvalid)
	}
	for _, kv := range hd.Headers {
		req.Header.Add(kv[0], kv[1])
	}
	if h.opts.Secret != "" {
		switch h.opts.Auth.Type {
		case "header":
			req.Header.Set(h.opts.Auth.Name, strings.ReplaceAll(h.opts.Auth.Format, abi.KeyPlaceholder, h.opts.Secret))
		case "query":
			q := req.URL.Query()
			q.Set(h.opts.Auth.Name, h.opts.Secret)
			req.URL.RawQuery = q.Encode()
		}
	}
	up := &upstream{cancel: cancel, modeCh: make(chan abi.BodyMode, 1)}
	h.ups[handle] = up
	h.wg.Add(1)
	go h.fetch(handle, up, req)
	return handle
}

// post2 posts from Run's own goroutine without blocking it.
func (h *Host) post2(fn func()) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.post(fn)
	}()
}

func (h *Host) client() *http.Client {
	if h.opts.Client != nil {
		return h.opts.Client
	}
	return http.DefaultClient
}

// fetch runs an upstream request on its own goroutine and posts its
// callbacks, each after the one before has run.
func (h *Host) fetch(handle int32, up *upstream, req *http.Request) {
	defer h.wg.Done()
	resp, err := h.client().Do(req)
	if err != nil {
		h.post(func() { h.httpEnd(handle, abi.StatusUnreachable) })
		return
	}
	defer resp.Body.Close()
	if !h.post(func() {
		if h.ups[handle] == nil {
			return
		}
		up.resp, up.mode, up.inHead = resp, abi.BodyWhole, true
		h.call(func() int32 { return h.g.OnHTTPHead(streamID, handle, int32(resp.StatusCode)) })
		up.inHead = false
		up.modeCh <- up.mode
	}) {
		return
	}
	var mode abi.BodyMode
	select {
	case mode = <-up.modeCh:
	case <-h.ctx.Done():
		return
	}
	status := abi.StatusOK
	switch mode {
	case abi.BodyWhole, abi.BodyRelay:
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil {
			status = abi.StatusIO
			break
		}
		if mode == abi.BodyRelay && !h.op.Streams() {
			h.post(func() { h.relayBody(handle, body) })
			return
		}
		if mode == abi.BodyRelay {
			status = h.relayEvents(handle, body)
			break
		}
		if !h.post(func() { h.httpData(handle, body) }) {
			return
		}
	case abi.BodyEvents:
		status = h.readEvents(handle, resp.Body)
	case abi.BodyChunks:
		buf := make([]byte, 16<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				d := append([]byte(nil), buf[:n]...)
				if !h.post(func() { h.httpData(handle, d) }) {
					return
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				status = abi.StatusIO
				break
			}
		}
	}
	h.post(func() { h.httpEnd(handle, status) })
}

// events delivers the data of each event of body as it arrives.
func (h *Host) readEvents(handle int32, body io.Reader) abi.Status {
	var p sse.Parser
	buf := make([]byte, 4096)
	for eof := false; ; {
		for {
			ev, ok := p.Next()
			if !ok && eof {
				ev, ok = p.Flush()
			}
			if !ok {
				break
			}
			d := append([]byte(nil), ev.Data...)
			if !h.post(func() { h.httpData(handle, d) }) {
				return abi.StatusClientGone
			}
		}
		if p.Err() != nil {
			return abi.StatusLimit
		}
		if eof {
			return abi.StatusOK
		}
		n, err := body.Read(buf)
		p.Feed(buf[:n])
		if err == io.EOF {
			eof = true
		} else if err != nil {
			return abi.StatusIO
		}
	}
}

// relayEvents sends each event's data as a chunk, up to "[DONE]", as the
// real host does without calling the plugin.
func (h *Host) relayEvents(handle int32, body []byte) abi.Status {
	var p sse.Parser
	p.Feed(body)
	for {
		ev, ok := p.Next()
		if !ok {
			ev, ok = p.Flush()
		}
		if !ok || string(ev.Data) == "[DONE]" {
			return abi.StatusOK
		}
		d := append([]byte(nil), ev.Data...)
		if !h.post(func() {
			if h.ups[handle] != nil && !h.ended {
				h.res.Emits = append(h.res.Emits, Emit{Kind: "chunk", Data: d})
			}
		}) {
			return abi.StatusClientGone
		}
	}
}

func (h *Host) relayBody(handle int32, body []byte) {
	if h.ups[handle] == nil || h.ended {
		return
	}
	delete(h.ups, handle)
	h.endStream("body", 0, body, abi.StatusOK)
}

func (h *Host) httpData(handle int32, d []byte) {
	if h.ups[handle] == nil || h.ended {
		return
	}
	h.data = d
	h.call(func() int32 { return h.g.OnHTTPData(streamID, handle, int32(len(d))) })
	h.data = nil
}

func (h *Host) httpEnd(handle int32, status abi.Status) {
	if h.ups[handle] == nil || h.ended {
		return
	}
	delete(h.ups, handle)
	h.call(func() int32 { return h.g.OnHTTPEnd(streamID, handle, int32(status)) })
}

func (h *Host) HTTPBody(handle int32, mode abi.BodyMode) int32 {
	u := h.ups[handle]
	if u == nil || !u.inHead || mode < abi.BodyWhole || mode > abi.BodyRelay {
		return int32(abi.StatusInvalid)
	}
	u.mode = mode
	return 0
}

func (h *Host) HTTPHeader(handle int32, name, buf []byte) int32 {
	u := h.ups[handle]
	if u == nil || u.resp == nil {
		return int32(abi.StatusInvalid)
	}
	v := u.resp.Header.Values(string(name))
	if len(v) == 0 {
		return int32(abi.StatusNotFound)
	}
	return copyOut(buf, []byte(v[0]))
}

func (h *Host) HTTPClose(handle int32) int32 {
	if u := h.ups[handle]; u != nil {
		u.cancel()
		delete(h.ups, handle)
		return 0
	}
	if h.images[handle] {
		delete(h.images, handle)
		return 0
	}
	return int32(abi.StatusInvalid)
}

func (h *Host) DataRead(buf []byte) int32 {
	if h.data == nil {
		return int32(abi.StatusInvalid)
	}
	return copyOut(buf, h.data)
}

func (h *Host) Emit(s int32, kind abi.Kind, data []byte) int32 {
	if s != streamID {
		return int32(abi.StatusInvalid)
	}
	if h.ended {
		return int32(abi.StatusEnded)
	}
	var k string
	switch kind {
	case abi.KindChunk:
		if !h.op.Streams() {
			return int32(abi.StatusInvalid)
		}
		k = "chunk"
	case abi.KindBody:
		if h.op.Streams() {
			return int32(abi.StatusInvalid)
		}
		h.endStream("body", 0, append([]byte(nil), data...), abi.StatusOK)
		return 0
	case abi.KindUsage:
		k = "usage"
	default:
		return int32(abi.StatusInvalid)
	}
	h.res.Emits = append(h.res.Emits, Emit{Kind: k, Data: append([]byte(nil), data...)})
	return 0
}

func (h *Host) Fail(s int32, status int32, body []byte) int32 {
	if s != streamID {
		return int32(abi.StatusInvalid)
	}
	if h.ended {
		return int32(abi.StatusEnded)
	}
	h.endStream("fail", int(status), append([]byte(nil), body...), abi.StatusOK)
	return 0
}

func (h *Host) Finish(s int32) int32 {
	if s != streamID {
		return int32(abi.StatusInvalid)
	}
	if h.ended {
		return int32(abi.StatusEnded)
	}
	if !h.op.Streams() {
		return int32(abi.StatusInvalid)
	}
	h.res.Finished = true
	h.endStream("", 0, nil, abi.StatusOK)
	return 0
}

func (h *Host) SetTimer(s int32, ms int32) int32 {
	if s != streamID || ms < 0 {
		return int32(abi.StatusInvalid)
	}
	if h.ended {
		return int32(abi.StatusEnded)
	}
	if h.timer != nil {
		h.timer.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(time.Duration(ms)*time.Millisecond, func() {
		h.post(func() {
			if h.timer != t || h.ended {
				return
			}
			h.timer = nil
			h.call(func() int32 { return h.g.OnTimer(streamID) })
		})
	})
	h.timer = t
	return 0
}

// JSONTape builds the tape natively, as the real host does.
func (h *Host) JSONTape(data []byte, tape []uint32) int32 {
	t, err := rawjson.AppendTape(nil, data)
	if err != nil {
		return int32(abi.StatusMalformed)
	}
	if len(t) <= cap(tape) {
		copy(tape[:len(t)], t)
	}
	return int32(len(t) / rawjson.EntryWords)
}

// FetchImage downloads the image natively. Unlike the real host it does not
// refuse private addresses (test servers are on loopback); it does check
// the media type and the size.
func (h *Host) FetchImage(s int32, u []byte) int32 {
	if s != streamID {
		return int32(abi.StatusInvalid)
	}
	if h.ended {
		return int32(abi.StatusEnded)
	}
	h.next++
	handle := h.next
	h.images[handle] = true
	target := string(u)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		out, status := h.download(target)
		h.post(func() {
			if !h.images[handle] || h.ended {
				return
			}
			delete(h.images, handle)
			result := int32(status)
			if status == abi.StatusOK {
				h.data, result = out, int32(len(out))
			}
			h.call(func() int32 { return h.g.OnImage(streamID, handle, result) })
			h.data = nil
		})
	}()
	return handle
}

// maxImage is the host's MaxFetchedImage.
const maxImage = 8 << 20

func (h *Host) download(target string) ([]byte, abi.Status) {
	req, err := http.NewRequestWithContext(h.ctx, "GET", target, nil)
	if err != nil {
		return nil, abi.StatusInvalid
	}
	resp, err := h.client().Do(req)
	if err != nil {
		return nil, abi.StatusUnreachable
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxImage+1))
	if resp.StatusCode != 200 {
		return nil, abi.StatusUnreachable
	}
	if len(data) > maxImage {
		return nil, abi.StatusLimit
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if !strings.HasPrefix(mt, "image/") {
		return nil, abi.StatusMalformed
	}
	out := append([]byte(mt), '\n')
	return base64.StdEncoding.AppendEncode(out, data), abi.StatusOK
}

func (h *Host) Log(level int32, msg []byte) int32 {
	h.res.Logs = append(h.res.Logs, string(msg))
	return 0
}
