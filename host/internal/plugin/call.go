package plugin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/llm-proxy/llm-proxy/host/internal/egress"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/sse"
)

// Sink receives what a plugin emits during one call. The byte slices alias
// guest memory and are valid only during the method: copy what you keep.
type Sink interface {
	// Chunk delivers one streamed event; false means the client is gone.
	Chunk(data []byte) bool
	// Body delivers a whole response body.
	Body(data []byte)
	// Usage reports token usage (an OpenAI usage object).
	Usage(data []byte)
	// Fail reports the plugin's error: an HTTP status, an OpenAI error
	// object or plain text, and the Retry-After of the last upstream answer.
	Fail(status int, body []byte, retryAfter string)
}

// Doer sends upstream requests for one provider (an *egress.Client).
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Invocation is one call into a plugin.
type Invocation struct {
	Op      abi.Op
	Request []byte // the unified request
	Config  []byte // the provider config JSON handed to the guest
	Egress  Doer
	Sink    Sink
	// ClientGone, when not nil, is closed once the client disconnects:
	// upstream requests are cancelled and emit returns StatusClientGone.
	ClientGone <-chan struct{}
}

type callKey struct{}

// callState is what host functions see of the current call.
type callState struct {
	inv     *Invocation
	limits  Limits
	upCtx   context.Context // ends on deadline or client gone
	out     *guestOutput
	gone    atomic.Bool
	handles []*upstream
	open    int
	readN   int64
	emitted int64
	body    bool
	overLim bool
	retry   string
	image   *fetchedImage // the last fetch_image result
}

type upstream struct {
	resp   *http.Response
	cancel context.CancelFunc
	closed bool
	raw    bool // read with http_read
	// http_read_event state
	events  *sse.Parser
	rbuf    *[]byte
	eof     bool
	pending []byte // an event that did not fit the guest's buffer
}

// readBufs holds the read buffers of event-parsed upstream bodies.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

func (u *upstream) release() {
	if !u.closed {
		u.closed = true
		u.resp.Body.Close()
		u.cancel()
	}
	if u.rbuf != nil {
		readBufs.Put(u.rbuf)
		u.rbuf = nil
	}
}

// Call runs one operation on a warm instance of v. It returns nil when the
// guest returned (whether it answered or reported a failure through the
// Sink), and ErrBusy, ErrRetired, ErrTimeout, ErrTrap or ErrOutputLimit
// otherwise. An instance whose call trapped, timed out or returned non-zero
// is discarded; what it emitted before stays delivered.
func (v *Version) Call(ctx context.Context, inv *Invocation) error {
	if !v.acquire() {
		return ErrRetired
	}
	defer v.release()
	v.inflight.Add(1)
	defer v.inflight.Add(-1)

	ctx, cancel := context.WithTimeout(ctx, v.limits.RequestTimeout)
	defer cancel()
	in, err := v.pool.get(ctx)
	if err != nil {
		return err
	}
	v.pool.calls.Add(1)

	// The guest's own context only ends at the deadline: a client that goes
	// away is reported through status codes so the guest can stop cleanly
	// and its instance can be reused.
	upCtx, upCancel := context.WithCancel(ctx)
	defer upCancel()
	st := &callState{inv: inv, limits: v.limits, upCtx: upCtx, out: v.out}
	if inv.ClientGone != nil {
		go func() {
			select {
			case <-inv.ClientGone:
				st.gone.Store(true)
				upCancel()
			case <-upCtx.Done():
			}
		}()
	}
	res, err := in.handle.Call(context.WithValue(ctx, callKey{}, st), uint64(inv.Op))
	st.closeAll()
	healthy := err == nil && len(res) == 1 && res[0] == 0
	v.pool.put(in, healthy)
	if !healthy {
		v.pool.failures.Add(1)
	}
	switch {
	case err != nil:
		var exit *sys.ExitError
		if errors.As(err, &exit) && (exit.ExitCode() == sys.ExitCodeDeadlineExceeded || exit.ExitCode() == sys.ExitCodeContextCanceled) {
			return ErrTimeout
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return ErrTimeout
		}
		v.log.Warn("plugin call failed", "op", inv.Op.String(), "err", err)
		return fmt.Errorf("%w: %v", ErrTrap, firstLine(err.Error()))
	case st.overLim:
		return ErrOutputLimit
	}
	return nil
}

func firstLine(s string) string {
	if i := bytes.IndexByte([]byte(s), '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func (st *callState) closeAll() {
	for _, u := range st.handles {
		if u != nil {
			u.release()
		}
	}
}

func stateOf(ctx context.Context) *callState {
	st, _ := ctx.Value(callKey{}).(*callState)
	return st
}

// guest memory access: every pointer and length is checked; a bad one is a
// StatusInvalid for the guest, never a trap or a host panic.
func view(mod api.Module, ptr, n uint32) ([]byte, bool) {
	if n == 0 {
		return nil, true
	}
	return mod.Memory().Read(ptr, n)
}

// copyOut implements "return the full length; write only if it fits".
func copyOut(mod api.Module, ptr, capacity uint32, src []byte) int32 {
	if len(src) <= int(capacity) && len(src) > 0 {
		if !mod.Memory().Write(ptr, src) {
			return int32(abi.StatusInvalid)
		}
	}
	return int32(len(src))
}

type hostFn struct {
	name string
	fn   func(ctx context.Context, mod api.Module, st *callState, a []uint64) int32
}

var hostFns = []hostFn{
	{abi.FnRequestRead, func(_ context.Context, mod api.Module, st *callState, a []uint64) int32 {
		return copyOut(mod, uint32(a[0]), uint32(a[1]), st.inv.Request)
	}},
	{abi.FnConfigRead, func(_ context.Context, mod api.Module, st *callState, a []uint64) int32 {
		return copyOut(mod, uint32(a[0]), uint32(a[1]), st.inv.Config)
	}},
	{abi.FnHTTPSend, hostHTTPSend},
	{abi.FnHTTPStatus, func(_ context.Context, _ api.Module, st *callState, a []uint64) int32 {
		u := st.handle(a[0])
		if u == nil {
			return int32(abi.StatusInvalid)
		}
		return int32(u.resp.StatusCode)
	}},
	{abi.FnHTTPHeader, func(_ context.Context, mod api.Module, st *callState, a []uint64) int32 {
		u := st.handle(a[0])
		name, ok := view(mod, uint32(a[1]), uint32(a[2]))
		if u == nil || !ok {
			return int32(abi.StatusInvalid)
		}
		vals := u.resp.Header.Values(string(name))
		if len(vals) == 0 {
			return int32(abi.StatusNotFound)
		}
		return copyOut(mod, uint32(a[3]), uint32(a[4]), []byte(vals[0]))
	}},
	{abi.FnHTTPRead, hostHTTPRead},
	{abi.FnHTTPReadEvent, hostHTTPReadEvent},
	{abi.FnHTTPClose, func(_ context.Context, _ api.Module, st *callState, a []uint64) int32 {
		u := st.handle(a[0])
		if u == nil {
			return int32(abi.StatusInvalid)
		}
		if !u.closed {
			st.open--
		}
		u.release()
		return 0
	}},
	{abi.FnEmit, hostEmit},
	{abi.FnFail, func(_ context.Context, mod api.Module, st *callState, a []uint64) int32 {
		body, ok := view(mod, uint32(a[1]), uint32(a[2]))
		if !ok {
			return int32(abi.StatusInvalid)
		}
		st.body = true
		st.inv.Sink.Fail(int(int32(a[0])), body, st.retry)
		return 0
	}},
	{abi.FnJSONTape, hostJSONTape},
	{abi.FnFetchImage, hostFetchImage},
	{abi.FnLog, func(_ context.Context, mod api.Module, st *callState, a []uint64) int32 {
		msg, ok := view(mod, uint32(a[1]), uint32(a[2]))
		if !ok {
			return int32(abi.StatusInvalid)
		}
		st.out.logGuest(int32(a[0]), msg)
		return 0
	}},
}

func (st *callState) handle(h uint64) *upstream {
	i := int(int32(h)) - 1
	if i < 0 || i >= len(st.handles) {
		return nil
	}
	return st.handles[i]
}

func hostHTTPSend(_ context.Context, mod api.Module, st *callState, a []uint64) int32 {
	headB, ok1 := view(mod, uint32(a[0]), uint32(a[1]))
	body, ok2 := view(mod, uint32(a[2]), uint32(a[3]))
	if !ok1 || !ok2 {
		return int32(abi.StatusInvalid)
	}
	if st.gone.Load() {
		return int32(abi.StatusClientGone)
	}
	if st.open >= st.limits.MaxHTTPHandles {
		return int32(abi.StatusLimit)
	}
	head, err := abi.ParseHead(headB)
	if err != nil {
		return int32(abi.StatusInvalid)
	}
	ctx, cancel := context.WithCancel(st.upCtx)
	var reader io.Reader
	if len(body) > 0 {
		reader = bytes.NewReader(bytes.Clone(body))
	}
	req, err := http.NewRequestWithContext(ctx, head.Method, head.URL, reader)
	if err != nil {
		cancel()
		return int32(abi.StatusInvalid)
	}
	for _, h := range head.Headers {
		req.Header.Add(h[0], h[1])
	}
	timedOut := new(atomic.Bool)
	timer := time.AfterFunc(st.limits.UpstreamTimeout, func() { timedOut.Store(true); cancel() })
	resp, err := st.inv.Egress.Do(req)
	timer.Stop()
	if err != nil {
		cancel()
		switch {
		case egress.IsDenied(err):
			return int32(abi.StatusDenied)
		case st.gone.Load():
			return int32(abi.StatusClientGone)
		case timedOut.Load() || egress.IsTimeout(err):
			return int32(abi.StatusTimeout)
		}
		return int32(abi.StatusUnreachable)
	}
	st.retry = resp.Header.Get("Retry-After")
	st.handles = append(st.handles, &upstream{resp: resp, cancel: cancel})
	st.open++
	return int32(len(st.handles))
}

func hostHTTPRead(_ context.Context, mod api.Module, st *callState, a []uint64) int32 {
	u := st.handle(a[0])
	buf, ok := view(mod, uint32(a[1]), uint32(a[2]))
	if u == nil || !ok || len(buf) == 0 || u.closed || u.events != nil {
		return int32(abi.StatusInvalid)
	}
	u.raw = true
	if st.readN >= st.limits.MaxUpstreamBodyBytes {
		return int32(abi.StatusLimit)
	}
	if rest := st.limits.MaxUpstreamBodyBytes - st.readN; int64(len(buf)) > rest {
		buf = buf[:rest]
	}
	for {
		// One Read returns whatever has arrived: a stream's events reach the
		// guest as soon as the upstream sends them.
		n, err := u.resp.Body.Read(buf)
		st.readN += int64(n)
		if n > 0 {
			return int32(n)
		}
		switch {
		case err == nil:
			continue
		case err == io.EOF:
			return 0
		}
		return st.readError(err)
	}
}

// readError maps a failed upstream body read to a status.
func (st *callState) readError(err error) int32 {
	switch {
	case st.gone.Load():
		return int32(abi.StatusClientGone)
	case errors.Is(st.upCtx.Err(), context.DeadlineExceeded) || egress.IsTimeout(err):
		return int32(abi.StatusTimeout)
	}
	return int32(abi.StatusIO)
}

// hostHTTPReadEvent returns the data of the next Server-Sent Event of an
// upstream body, parsed natively: parsing in the guest cost about 7 us per
// event, parsing here a fraction of one. It reads from the upstream only
// until one complete event is there, so events reach the client as they
// arrive. An event larger than the guest's buffer is kept for the retry.
func hostHTTPReadEvent(_ context.Context, mod api.Module, st *callState, a []uint64) int32 {
	u := st.handle(a[0])
	ptr, capacity := uint32(a[1]), uint32(a[2])
	if u == nil || u.closed || u.raw {
		return int32(abi.StatusInvalid)
	}
	if u.pending != nil {
		return u.deliver(mod, ptr, capacity, u.pending)
	}
	if u.events == nil {
		u.events = new(sse.Parser)
		u.rbuf = readBufs.Get().(*[]byte)
	}
	for {
		if ev, ok := u.events.Next(); ok {
			return u.deliver(mod, ptr, capacity, ev.Data)
		}
		if u.events.Err() != nil {
			return int32(abi.StatusLimit)
		}
		if u.eof {
			if ev, ok := u.events.Flush(); ok {
				return u.deliver(mod, ptr, capacity, ev.Data)
			}
			return 0
		}
		if st.readN >= st.limits.MaxUpstreamBodyBytes {
			return int32(abi.StatusLimit)
		}
		buf := (*u.rbuf)[:min(int64(len(*u.rbuf)), st.limits.MaxUpstreamBodyBytes-st.readN)]
		n, err := u.resp.Body.Read(buf)
		st.readN += int64(n)
		if n > 0 {
			u.events.Feed(buf[:n])
		}
		switch {
		case err == io.EOF:
			u.eof = true
		case err != nil:
			return st.readError(err)
		}
	}
}

// deliver copies an event's data into the guest's buffer when it fits and
// returns its length either way (keeping it for the retry when it does not).
func (u *upstream) deliver(mod api.Module, ptr, capacity uint32, data []byte) int32 {
	if len(data) > int(capacity) {
		if u.pending == nil {
			u.pending = bytes.Clone(data)
		}
		return int32(len(data))
	}
	if len(data) > 0 && !mod.Memory().Write(ptr, data) {
		return int32(abi.StatusInvalid)
	}
	u.pending = nil
	return int32(len(data))
}

func hostEmit(_ context.Context, mod api.Module, st *callState, a []uint64) int32 {
	data, ok := view(mod, uint32(a[1]), uint32(a[2]))
	if !ok {
		return int32(abi.StatusInvalid)
	}
	if st.gone.Load() {
		return int32(abi.StatusClientGone)
	}
	kind := abi.Kind(int32(a[0]))
	if kind == abi.KindChunk || kind == abi.KindBody {
		// Only bytes bound for the client count against the limit.
		if st.emitted+int64(len(data)) > st.limits.MaxEmitBytes {
			st.overLim = true
			return int32(abi.StatusLimit)
		}
		st.emitted += int64(len(data))
	}
	switch kind {
	case abi.KindChunk:
		if st.inv.Op != abi.OpChatStream {
			return int32(abi.StatusInvalid)
		}
		if !st.inv.Sink.Chunk(data) {
			st.gone.Store(true)
			return int32(abi.StatusClientGone)
		}
	case abi.KindBody:
		if st.body || st.inv.Op == abi.OpChatStream {
			return int32(abi.StatusInvalid)
		}
		st.body = true
		st.inv.Sink.Body(data)
	case abi.KindUsage:
		st.inv.Sink.Usage(data)
	default:
		return int32(abi.StatusInvalid)
	}
	return 0
}
