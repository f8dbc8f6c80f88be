package plugin

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// hostFunc implements one host function: a holds its i32 arguments as the
// table in sdk/abi declares them. It runs on the worker's goroutine, during
// a callback, and must not block or trap: bad arguments are a status.
type hostFunc func(w *worker, mod api.Module, a []uint64) abi.Status

// hostFuncs are the implementations of abi.HostFuncs, by name. A test holds
// the two to each other.
var hostFuncs = map[string]hostFunc{
	abi.FnRequestRead: hostRequestRead,
	abi.FnConfigRead:  hostConfigRead,
	abi.FnHTTPSend:    hostHTTPSend,
	abi.FnHTTPBody:    hostHTTPBody,
	abi.FnHTTPHeader:  hostHTTPHeader,
	abi.FnHTTPClose:   hostHTTPClose,
	abi.FnDataRead:    hostDataRead,
	abi.FnEmit:        hostEmit,
	abi.FnFail:        hostFail,
	abi.FnFinish:      hostFinish,
	abi.FnFetchImage:  hostFetchImage,
	abi.FnSetTimer:    hostSetTimer,
	abi.FnJSONTape:    hostJSONTape,
	abi.FnLog:         hostLog,
}

// instantiateHostModule defines llmproxy_v2 in r from the table. A host
// function called outside a callback (from _initialize) answers
// StatusInvalid.
func instantiateHostModule(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder(abi.ImportModule)
	for _, f := range abi.HostFuncs {
		impl := hostFuncs[f.Name]
		if impl == nil {
			return fmt.Errorf("host function %s has no implementation", f.Name)
		}
		n := f.Arity()
		params := make([]api.ValueType, n)
		names := make([]string, n)
		for i, p := range f.Params {
			params[i], names[i] = api.ValueTypeI32, p.Name
		}
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
				w := workerOf(ctx)
				if w == nil || w.cur == nil {
					stack[0] = api.EncodeI32(int32(abi.StatusInvalid))
					return
				}
				stack[0] = api.EncodeI32(int32(impl(w, mod, stack[:n])))
			}), params, []api.ValueType{api.ValueTypeI32}).
			WithName(f.Name).
			WithParameterNames(names...).
			Export(f.Name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

// view returns guest memory [ptr, ptr+n); false if it is not all inside.
func view(mod api.Module, ptr, n uint64) ([]byte, bool) {
	if n == 0 {
		return nil, true
	}
	return mod.Memory().Read(uint32(ptr), uint32(n))
}

// copyOut implements "return the full length; write only if it fits".
func copyOut(mod api.Module, ptr, capacity uint64, src []byte) abi.Status {
	if len(src) <= int(uint32(capacity)) && len(src) > 0 {
		if !mod.Memory().Write(uint32(ptr), src) {
			return abi.StatusInvalid
		}
	}
	return abi.Status(len(src))
}

// stream returns the stream an argument names; nil if it is not one of
// this instance's.
func (w *worker) streamArg(a uint64) *Stream { return w.stream(int32(a)) }

func hostRequestRead(w *worker, mod api.Module, a []uint64) abi.Status {
	st := w.streamArg(a[0])
	if st == nil {
		return abi.StatusInvalid
	}
	return copyOut(mod, a[1], a[2], st.inv.Request)
}

func hostConfigRead(w *worker, mod api.Module, a []uint64) abi.Status {
	st := w.streamArg(a[0])
	if st == nil {
		return abi.StatusInvalid
	}
	return copyOut(mod, a[1], a[2], st.inv.Config)
}

func hostHTTPSend(w *worker, mod api.Module, a []uint64) abi.Status {
	st := w.streamArg(a[0])
	headB, ok1 := view(mod, a[1], a[2])
	body, ok2 := view(mod, a[3], a[4])
	if st == nil || !ok1 || !ok2 || w.fns[fnHead] == nil || w.fns[fnEnd] == nil {
		return abi.StatusInvalid
	}
	if st.isEnded() {
		return endedStatus(st.cause())
	}
	head, err := abi.ParseHead(headB)
	if err != nil {
		return abi.StatusInvalid
	}
	var req *http.Request
	if len(body) > 0 {
		req, err = http.NewRequest(head.Method, head.URL, bytes.NewReader(bytes.Clone(body)))
	} else {
		req, err = http.NewRequest(head.Method, head.URL, nil)
	}
	if err != nil {
		return abi.StatusInvalid
	}
	for _, h := range head.Headers {
		req.Header.Add(h[0], h[1])
	}
	if st.inv.Egress == nil {
		return abi.StatusDenied
	}
	u, s := w.openHandle(st)
	if s != abi.StatusOK {
		return s
	}
	u.send(req, st.inv.Egress)
	return abi.Status(u.handle)
}

// openHandle opens a handle of stream st (an upstream request or an image
// fetch), within the stream's limit of open handles.
func (w *worker) openHandle(st *Stream) (*upstream, abi.Status) {
	w.handleN++
	parent := context.Background()
	if c := st.inv.Context; c != nil {
		parent = context.WithoutCancel(c)
	}
	ctx, cancel := context.WithCancel(parent)
	u := &upstream{handle: w.handleN, st: st, w: w, ctx: ctx, cancel: cancel, ack: make(chan struct{}, 1)}
	if s := st.track(u); s != abi.StatusOK {
		cancel()
		return nil, s
	}
	w.handles[u.handle] = u
	return u, abi.StatusOK
}

func hostHTTPBody(w *worker, _ api.Module, a []uint64) abi.Status {
	u, mode := w.inHead, abi.BodyMode(int32(a[1]))
	if u == nil || u.handle != int32(a[0]) || mode < abi.BodyWhole || mode > abi.BodyRelay {
		return abi.StatusInvalid
	}
	if mode == abi.BodyEvents || mode == abi.BodyChunks || mode == abi.BodyWhole {
		if w.fns[fnData] == nil {
			return abi.StatusInvalid
		}
	}
	u.mode = mode
	return abi.StatusOK
}

func hostHTTPHeader(w *worker, mod api.Module, a []uint64) abi.Status {
	u := w.handles[int32(a[0])]
	name, ok := view(mod, a[1], a[2])
	if u == nil || !ok {
		return abi.StatusInvalid
	}
	resp := u.resp.Load()
	if resp == nil {
		return abi.StatusInvalid
	}
	vals := resp.Header.Values(string(name))
	if len(vals) == 0 {
		return abi.StatusNotFound
	}
	return copyOut(mod, a[3], a[4], []byte(vals[0]))
}

func hostHTTPClose(w *worker, _ api.Module, a []uint64) abi.Status {
	u := w.handles[int32(a[0])]
	if u == nil {
		return abi.StatusInvalid
	}
	delete(w.handles, u.handle)
	u.st.release(u)
	u.cancel()
	return abi.StatusOK
}

func hostDataRead(w *worker, mod api.Module, a []uint64) abi.Status {
	if w.data == nil {
		return abi.StatusInvalid
	}
	return copyOut(mod, a[0], a[1], w.data)
}

func hostEmit(w *worker, mod api.Module, a []uint64) abi.Status {
	st := w.streamArg(a[0])
	data, ok := view(mod, a[2], a[3])
	if st == nil || !ok {
		return abi.StatusInvalid
	}
	return st.emit(abi.Kind(int32(a[1])), data)
}

func hostFail(w *worker, mod api.Module, a []uint64) abi.Status {
	st := w.streamArg(a[0])
	body, ok := view(mod, a[2], a[3])
	if st == nil || !ok {
		return abi.StatusInvalid
	}
	return st.fail(int(int32(a[1])), body)
}

func hostFinish(w *worker, _ api.Module, a []uint64) abi.Status {
	st := w.streamArg(a[0])
	if st == nil {
		return abi.StatusInvalid
	}
	return st.finish()
}

func hostSetTimer(w *worker, _ api.Module, a []uint64) abi.Status {
	st, ms := w.streamArg(a[0]), int32(a[1])
	if st == nil || ms < 0 || w.fns[fnTimer] == nil {
		return abi.StatusInvalid
	}
	return st.setTimer(time.Duration(ms) * time.Millisecond)
}

func hostLog(w *worker, mod api.Module, a []uint64) abi.Status {
	msg, ok := view(mod, a[1], a[2])
	if !ok {
		return abi.StatusInvalid
	}
	w.v.out.logGuest(int32(a[0]), msg)
	return abi.StatusOK
}
