// Package plugintest runs a plugin natively, without wasm, against a host
// that behaves like LLM Proxy's: it serves the request and config, sends
// upstream requests with net/http (adding the declared credentials), and
// records what the plugin emits. A plugin author tests translation logic
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
	// Client sends upstream requests; nil means http.DefaultClient.
	Client *http.Client
	// Context bounds upstream requests; nil means context.Background().
	Context context.Context
}

// Emit is one thing the plugin sent to the host.
type Emit struct {
	Kind   string // "chunk", "body", "usage" or "fail"
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
	Ret   int32
	Emits []Emit
	Logs  []string
}

// runMu serialises runs: like a wasm instance, the SDK serves one call at a
// time and reuses package-level buffers between calls, so tests that run
// plugins in parallel take turns here.
var runMu sync.Mutex

// Run performs one operation of p natively. It is safe to call from
// parallel tests; runs take turns.
func Run(p sdk.Plugin, op abi.Op, request []byte, o Options) *Result {
	runMu.Lock()
	defer runMu.Unlock()
	h := &Host{opts: o, request: request, handles: map[int32]*http.Response{}, events: map[int32]*eventState{}}
	ret := sdk.Serve(h, p, op)
	h.closeAll()
	return &Result{Ret: ret, Emits: h.emits, Logs: h.logs}
}

// Host implements sdk.Host natively.
type Host struct {
	opts    Options
	request []byte
	mu      sync.Mutex
	handles map[int32]*http.Response
	events  map[int32]*eventState
	next    int32
	emits   []Emit
	logs    []string
	image   *fetched
}

func copyOut(buf, src []byte) int32 {
	if len(src) <= cap(buf) {
		copy(buf[:len(src)], src)
	}
	return int32(len(src))
}

func (h *Host) RequestRead(buf []byte) int32 { return copyOut(buf, h.request) }

func (h *Host) ConfigRead(buf []byte) int32 {
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

func (h *Host) HTTPSend(head, body []byte) int32 {
	hd, err := abi.ParseHead(head)
	if err != nil {
		return int32(abi.StatusInvalid)
	}
	u, err := url.Parse(hd.URL)
	base, _ := url.Parse(h.opts.BaseURL)
	if err != nil || base == nil || u.Host != base.Host {
		return int32(abi.StatusDenied)
	}
	ctx := h.opts.Context
	if ctx == nil {
		ctx = context.Background()
	}
	req, err := http.NewRequestWithContext(ctx, hd.Method, hd.URL, strings.NewReader(string(body)))
	if err != nil {
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
	client := h.opts.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return int32(abi.StatusUnreachable)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next++
	h.handles[h.next] = resp
	return h.next
}

func (h *Host) get(handle int32) *http.Response {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.handles[handle]
}

func (h *Host) HTTPStatus(handle int32) int32 {
	r := h.get(handle)
	if r == nil {
		return int32(abi.StatusInvalid)
	}
	return int32(r.StatusCode)
}

func (h *Host) HTTPHeader(handle int32, name, buf []byte) int32 {
	r := h.get(handle)
	if r == nil {
		return int32(abi.StatusInvalid)
	}
	v := r.Header.Values(string(name))
	if len(v) == 0 {
		return int32(abi.StatusNotFound)
	}
	return copyOut(buf, []byte(v[0]))
}

func (h *Host) HTTPRead(handle int32, buf []byte) int32 {
	r := h.get(handle)
	if r == nil || cap(buf) == 0 {
		return int32(abi.StatusInvalid)
	}
	for {
		n, err := r.Body.Read(buf[:cap(buf)])
		if n > 0 {
			return int32(n)
		}
		if err == io.EOF {
			return 0
		}
		if err != nil {
			return int32(abi.StatusIO)
		}
	}
}

// HTTPReadEvent parses the body natively, as the real host does.
func (h *Host) HTTPReadEvent(handle int32, buf []byte) int32 {
	r := h.get(handle)
	if r == nil {
		return int32(abi.StatusInvalid)
	}
	st := h.events[handle]
	if st == nil {
		st = &eventState{}
		h.events[handle] = st
	}
	deliver := func(data []byte) int32 {
		if len(data) > cap(buf) {
			if st.pending == nil {
				st.pending = append([]byte{}, data...)
			}
			return int32(len(data))
		}
		copy(buf[:len(data)], data)
		st.pending = nil
		return int32(len(data))
	}
	if st.pending != nil {
		return deliver(st.pending)
	}
	chunk := make([]byte, 4096)
	for {
		if ev, ok := st.p.Next(); ok {
			return deliver(ev.Data)
		}
		if st.p.Err() != nil {
			return int32(abi.StatusLimit)
		}
		if st.eof {
			if ev, ok := st.p.Flush(); ok {
				return deliver(ev.Data)
			}
			return 0
		}
		n, err := r.Body.Read(chunk)
		st.p.Feed(chunk[:n])
		if err == io.EOF {
			st.eof = true
		} else if err != nil {
			return int32(abi.StatusIO)
		}
	}
}

type eventState struct {
	p       sse.Parser
	eof     bool
	pending []byte
}

func (h *Host) HTTPClose(handle int32) int32 {
	h.mu.Lock()
	r := h.handles[handle]
	delete(h.handles, handle)
	h.mu.Unlock()
	if r == nil {
		return int32(abi.StatusInvalid)
	}
	r.Body.Close()
	return 0
}

func (h *Host) closeAll() {
	for k := range h.handles {
		h.HTTPClose(k)
	}
}

func (h *Host) Emit(kind abi.Kind, data []byte) int32 {
	var k string
	switch kind {
	case abi.KindChunk:
		k = "chunk"
	case abi.KindBody:
		k = "body"
	case abi.KindUsage:
		k = "usage"
	default:
		return int32(abi.StatusInvalid)
	}
	h.emits = append(h.emits, Emit{Kind: k, Data: append([]byte(nil), data...)})
	return 0
}

func (h *Host) Fail(status int32, body []byte) int32 {
	h.emits = append(h.emits, Emit{Kind: "fail", Status: int(status), Data: append([]byte(nil), body...)})
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
func (h *Host) FetchImage(url, buf []byte) int32 {
	if h.image == nil || h.image.url != string(url) {
		client := h.opts.Client
		if client == nil {
			client = http.DefaultClient
		}
		resp, err := client.Get(string(url))
		if err != nil {
			return int32(abi.StatusUnreachable)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxImage+1))
		if resp.StatusCode != 200 {
			return int32(abi.StatusUnreachable)
		}
		if len(data) > maxImage {
			return int32(abi.StatusLimit)
		}
		mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if !strings.HasPrefix(mt, "image/") {
			return int32(abi.StatusMalformed)
		}
		out := append([]byte(mt), '\n')
		out = base64.StdEncoding.AppendEncode(out, data)
		h.image = &fetched{url: string(url), out: out}
	}
	return copyOut(buf, h.image.out)
}

// maxImage is the host's MaxFetchedImage.
const maxImage = 8 << 20

type fetched struct {
	url string
	out []byte
}

func (h *Host) Log(level int32, msg []byte) int32 {
	h.logs = append(h.logs, string(msg))
	return 0
}
