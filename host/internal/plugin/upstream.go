package plugin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/egress"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/sse"
)

// upstream is one upstream request (or image fetch) of a stream. Its
// goroutine waits for the answer, then delivers it as callbacks through the
// worker's queue, reading the body only while the stream's client keeps up
// and the guest has taken what came before.
type upstream struct {
	handle int32
	st     *Stream
	w      *worker
	ctx    context.Context
	cancel context.CancelFunc
	resp   atomic.Pointer[http.Response] // set before the head callback is queued
	mode   abi.BodyMode                  // set by http_body during the head callback
	ack    chan struct{}
}

// readBufs hold the read buffers of upstream bodies. 4 KiB is what one read
// of a streamed answer brings (events are a few hundred bytes); the SSE
// parser keeps a longer event across reads.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 4<<10); return &b }}

// send starts the request on its own goroutine.
func (u *upstream) send(req *http.Request, doer Doer) {
	go u.run(req, doer)
}

func (u *upstream) run(req *http.Request, doer Doer) {
	defer u.cancel()
	st := u.st
	// The head must arrive within UpstreamTimeout; the body may take as
	// long as the stream may.
	timedOut := new(atomic.Bool)
	timer := time.AfterFunc(st.lim.UpstreamTimeout, func() { timedOut.Store(true); u.cancel() })
	resp, err := doer.Do(req.WithContext(u.ctx))
	timer.Stop()
	if err != nil {
		status := abi.StatusUnreachable
		switch {
		case egress.IsDenied(err):
			status = abi.StatusDenied
		case timedOut.Load() || egress.IsTimeout(err):
			status = abi.StatusTimeout
		case u.ctx.Err() != nil:
			return // closed by the guest, or the stream ended
		}
		u.finish(status)
		return
	}
	defer resp.Body.Close()
	u.resp.Store(resp)
	st.setRetryAfter(resp.Header.Get("Retry-After"))
	if !u.deliver(task{kind: tHead, arg: int32(resp.StatusCode)}) {
		return
	}
	var status abi.Status
	switch u.mode {
	case abi.BodyEvents, abi.BodyRelay:
		if u.mode == abi.BodyRelay && !st.inv.Op.Streams() {
			status = u.relayWhole(resp.Body)
		} else {
			status = u.events(resp.Body, u.mode == abi.BodyRelay)
		}
	case abi.BodyChunks:
		status = u.chunks(resp.Body)
	default:
		status = u.whole(resp.Body)
	}
	if status != statusStop {
		u.finish(status)
	}
}

// statusStop: the body's delivery stopped without an end to report (the
// stream ended, or the guest closed the request).
const statusStop abi.Status = 1

// deliver queues a callback for this upstream and waits until it ran; false
// if the stream ended or the request was closed meanwhile.
func (u *upstream) deliver(t task) bool {
	t.st, t.u, t.ack = u.st, u, u.ack
	if !u.w.enqueue(t) {
		return false
	}
	select {
	case <-u.ack:
	case <-u.ctx.Done():
		return false
	}
	return u.ctx.Err() == nil
}

// finish queues the end of the request.
func (u *upstream) finish(status abi.Status) {
	u.w.enqueue(task{kind: tEnd, st: u.st, u: u, arg: int32(status)})
}

// read reads the next part of body within the stream's body budget.
func (u *upstream) read(body io.Reader, buf []byte) (int, abi.Status, bool) {
	lim := u.st.lim.MaxUpstreamBodyBytes
	n0 := u.st.readN.Load()
	if n0 >= lim {
		return 0, abi.StatusLimit, true
	}
	if rest := lim - n0; int64(len(buf)) > rest {
		buf = buf[:rest]
	}
	n, err := body.Read(buf)
	u.st.readN.Add(int64(n))
	switch {
	case err == nil:
		return n, abi.StatusOK, false
	case err == io.EOF:
		return n, abi.StatusOK, true
	case u.ctx.Err() != nil && !errors.Is(u.ctx.Err(), context.DeadlineExceeded):
		return n, statusStop, true
	case egress.IsTimeout(err):
		return n, abi.StatusTimeout, true
	}
	return n, abi.StatusIO, true
}

// whole reads the body to its end and delivers it in one callback (an empty
// body too).
func (u *upstream) whole(body io.Reader) abi.Status {
	data, status := u.readAll(body)
	if status != abi.StatusOK {
		return status
	}
	if !u.deliver(task{kind: tData, data: data}) {
		return statusStop
	}
	return abi.StatusOK
}

func (u *upstream) readAll(body io.Reader) ([]byte, abi.Status) {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	var data []byte
	for {
		n, status, done := u.read(body, *bp)
		data = append(data, (*bp)[:n]...)
		if done {
			return data, status
		}
	}
}

// relayWhole answers a non-streamed operation with the body as it is.
func (u *upstream) relayWhole(body io.Reader) abi.Status {
	data, status := u.readAll(body)
	if status != abi.StatusOK {
		return status
	}
	// Answer before letting go of the request: released first, a callback
	// running meanwhile could find the stream with nothing pending and end
	// it as having no response. A success that is not JSON (an event
	// stream, an HTML page) is not passed on as if it were.
	if resp := u.resp.Load(); resp != nil && resp.StatusCode < 300 && !looksJSON(data) {
		u.st.end(ErrUpstreamNotJSON)
	} else {
		u.st.relayBody(data)
	}
	u.st.release(u)
	return statusStop
}

// looksJSON reports whether b starts, after white space, like a JSON
// object or array: a cheap test that tells a JSON answer from an event
// stream or a web page without parsing it.
func looksJSON(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && (b[0] == '{' || b[0] == '[')
}

// chunks delivers the body's bytes as they arrive.
func (u *upstream) chunks(body io.Reader) abi.Status {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	for {
		if !u.st.waitWritable(u.ctx.Done()) {
			return statusStop
		}
		n, status, done := u.read(body, *bp)
		if n > 0 && !u.deliver(task{kind: tData, data: bytes.Clone((*bp)[:n])}) {
			return statusStop
		}
		if done {
			return status
		}
	}
}

// events parses the body as Server-Sent Events natively and delivers the
// data of each: to the guest, one callback per event, or (relay) straight
// to the client up to an event "[DONE]". All the events of one read are
// queued together and the reader waits for the last one to have run.
func (u *upstream) events(body io.Reader, relay bool) abi.Status {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	var p sse.Parser
	for eof := false; ; {
		var last *task
		for {
			ev, ok := p.Next()
			if !ok && eof {
				ev, ok = p.Flush()
			}
			if !ok {
				break
			}
			if relay {
				if string(ev.Data) == "[DONE]" {
					return abi.StatusOK
				}
				if !u.st.relayChunk(ev.Data) {
					return statusStop
				}
				continue
			}
			if last != nil && !u.w.enqueue(*last) {
				return statusStop
			}
			last = &task{kind: tData, st: u.st, u: u, data: bytes.Clone(ev.Data)}
		}
		if last != nil && !u.deliver(*last) {
			return statusStop
		}
		if p.Err() != nil {
			return abi.StatusLimit
		}
		if eof {
			return abi.StatusOK
		}
		if !u.st.waitWritable(u.ctx.Done()) {
			return statusStop
		}
		n, status, done := u.read(body, *bp)
		if n > 0 {
			p.Feed((*bp)[:n])
		}
		if done {
			if status != abi.StatusOK {
				return status
			}
			eof = true
		}
	}
}
