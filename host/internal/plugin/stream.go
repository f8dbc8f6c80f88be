package plugin

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// Sink receives what a plugin sends for one stream. Every method is called
// with the stream's lock held, from the instance's goroutine or an
// upstream's reader, and must not block: a Sink queues for the client and
// returns. The byte slices may alias guest memory or a reused buffer, and
// are valid only during the call: copy what you keep.
type Sink interface {
	// Chunk delivers one streamed event; false means the client is gone.
	Chunk(data []byte) bool
	// Body delivers a whole response body; End(nil) follows.
	Body(data []byte)
	// Usage reports token usage (an OpenAI usage object).
	Usage(data []byte)
	// End is called once, when the stream ends: with nil after a body or a
	// finished chat stream; with a *Failure when the guest failed it; or
	// with ErrTrap, ErrTimeout, ErrOutputLimit, ErrNoResponse or
	// ErrClientGone when the host ended it.
	End(err error)
	// Backlog is the number of bytes waiting for the client. The host stops
	// reading the stream's upstreams while it is at or above
	// Limits.StreamBufferBytes.
	Backlog() int
	// Drained returns a channel that is closed the next time the backlog
	// shrinks.
	Drained() <-chan struct{}
}

// Doer sends upstream requests for one provider (an *egress.Client).
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Invocation is what a stream needs to start.
type Invocation struct {
	Op      abi.Op
	Request []byte // the unified request
	Config  []byte // the provider config JSON handed to the guest
	Egress  Doer
	Sink    Sink
	// Context carries values (the request's trace) to the upstream
	// requests the guest makes; its deadline and cancellation are not
	// used. Nil: none.
	Context context.Context
}

// Stream is one client request being served by an instance of a plugin.
type Stream struct {
	id  int32
	w   *worker
	inv Invocation
	lim *Limits

	readN atomic.Int64 // upstream body bytes read, all upstreams together

	mu         sync.Mutex
	ended      bool
	err        error               // why it ended
	pending    int                 // upstream requests, image fetches and a timer the guest waits for
	ups        []*upstream         // those not yet ended, to cancel at the end
	seen       []int32             // every handle it was given, to forget at on_done
	timer      *time.Timer         // the guest's timer
	timerGen   int32               //
	deadline   *time.Timer         // RequestTimeout
	emitted    int64               // bytes sent to the client
	retryAfter string              // of the last upstream answer
	images     map[string]struct{} // image URLs of the request, listed at the first fetch_image
	fetches    int                 // images fetched
}

// Open starts a stream of inv on an instance of v. It returns at once; the
// stream's outcome reaches inv.Sink, whose End may be called before Open
// returns. ErrRetired means v was replaced before anything ran (retry on
// the successor); ErrBusy that every instance is full.
func (v *Version) Open(inv Invocation) (*Stream, error) {
	if !v.acquire() {
		return nil, ErrRetired
	}
	st := &Stream{inv: inv, lim: &v.limits}
	for attempt := 0; ; attempt++ {
		w, err := v.sched.assign()
		if err != nil {
			v.release()
			return nil, err
		}
		st.w = w
		if w.add(st) {
			break
		}
		// The instance died between assignment and start: it did not
		// count this stream as done, so give it back and try another.
		w.nstreams.Add(-1)
		if attempt == 2 {
			v.release()
			return nil, ErrTrap
		}
	}
	v.sched.streams.Add(1)
	st.mu.Lock()
	if !st.ended {
		st.deadline = time.AfterFunc(v.limits.RequestTimeout, func() { st.end(ErrTimeout) })
	}
	st.mu.Unlock()
	return st, nil
}

// Cancel ends the stream from the client's side (it went away or stopped
// reading): its upstream requests are cancelled, the guest is told with
// on_done, and the Sink's End gets ErrClientGone. A stream that already
// ended is left as it is.
func (st *Stream) Cancel() { st.end(ErrClientGone) }

// end finishes the stream with err unless it already ended; it reports
// whether this call ended it.
func (st *Stream) end(err error) bool {
	st.mu.Lock()
	ups, ok := st.finishLocked(err)
	st.mu.Unlock()
	if ok {
		st.afterEnd(ups)
	}
	return ok
}

// finishLocked marks the stream ended and tells the Sink; the caller then
// calls afterEnd with what it returns, without the lock.
func (st *Stream) finishLocked(err error) ([]*upstream, bool) {
	if st.ended {
		return nil, false
	}
	st.ended, st.err = true, err
	ups := st.ups
	st.ups = nil
	if st.timer != nil {
		st.timer.Stop()
		st.timer = nil
	}
	if st.deadline != nil {
		st.deadline.Stop()
	}
	st.inv.Sink.End(err)
	return ups, true
}

// afterEnd cancels what the stream had open and queues its on_done.
func (st *Stream) afterEnd(ups []*upstream) {
	for _, u := range ups {
		u.cancel()
	}
	st.w.enqueue(task{kind: tDone, st: st})
}

func (st *Stream) isEnded() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.ended
}

func (st *Stream) cause() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.err
}

// doneReason is on_done's reason for how a stream ended.
func doneReason(err error) abi.Status {
	switch err {
	case nil:
		return abi.StatusOK
	case ErrClientGone:
		return abi.StatusClientGone
	case ErrTimeout:
		return abi.StatusTimeout
	case ErrOutputLimit:
		return abi.StatusLimit
	case ErrNoResponse:
		return abi.StatusAborted
	}
	if _, ok := err.(*Failure); ok {
		return abi.StatusOK
	}
	return abi.StatusAborted
}

// checkAnswered ends a stream the guest left with nothing to wait for and
// no answer: the client gets 502 plugin_no_response instead of waiting for
// its deadline.
func (st *Stream) checkAnswered() {
	st.mu.Lock()
	var ups []*upstream
	ok := false
	if !st.ended && st.pending == 0 {
		ups, ok = st.finishLocked(ErrNoResponse)
	}
	st.mu.Unlock()
	if ok {
		st.afterEnd(ups)
	}
}

// handlesSeen returns every handle the stream was given.
func (st *Stream) handlesSeen() []int32 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.seen
}

// track counts an upstream request or image fetch the guest now waits for.
func (st *Stream) track(u *upstream) abi.Status {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return abi.StatusEnded
	}
	if len(st.ups) >= st.lim.MaxHTTPHandles {
		return abi.StatusLimit
	}
	st.ups = append(st.ups, u)
	st.seen = append(st.seen, u.handle)
	st.pending++
	return abi.StatusOK
}

// release uncounts an upstream whose end is being delivered or that the
// guest closed; false if it was already released (or the stream ended).
func (st *Stream) release(u *upstream) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	for i, x := range st.ups {
		if x == u {
			st.ups = append(st.ups[:i], st.ups[i+1:]...)
			st.pending--
			return !st.ended
		}
	}
	return false
}

// setTimer arms the guest's timer, replacing a pending one.
func (st *Stream) setTimer(d time.Duration) abi.Status {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return abi.StatusEnded
	}
	if st.timer != nil {
		st.timer.Stop()
	} else {
		st.pending++
	}
	st.timerGen++
	gen := st.timerGen
	st.timer = time.AfterFunc(d, func() { st.w.enqueue(task{kind: tTimer, st: st, arg: gen}) })
	return abi.StatusOK
}

// timerFired reports whether a timer task is the stream's current timer,
// and disarms it.
func (st *Stream) timerFired(gen int32) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended || st.timer == nil || gen != st.timerGen {
		return false
	}
	st.timer = nil
	st.pending--
	return true
}

func (st *Stream) setRetryAfter(v string) {
	st.mu.Lock()
	st.retryAfter = v
	st.mu.Unlock()
}

// overLimits reports whether n more bytes for the client would break the
// stream's output limits. Called with the lock held.
func (st *Stream) overLimits(n int) bool {
	return st.emitted+int64(n) > st.lim.MaxEmitBytes ||
		int64(st.inv.Sink.Backlog()+n) > backlogFactor*st.lim.StreamBufferBytes
}

// emit is the emit host function for this stream.
func (st *Stream) emit(kind abi.Kind, data []byte) abi.Status {
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return endedStatus(st.err)
	}
	var ups []*upstream
	ended := false
	status := abi.StatusOK
	switch kind {
	case abi.KindUsage:
		st.inv.Sink.Usage(data)
	case abi.KindChunk, abi.KindBody:
		stream := st.inv.Op.Streams()
		switch {
		case stream != (kind == abi.KindChunk):
			status = abi.StatusInvalid
		case st.overLimits(len(data)):
			ups, ended = st.finishLocked(ErrOutputLimit)
			status = abi.StatusLimit
		case kind == abi.KindBody:
			st.emitted += int64(len(data))
			st.inv.Sink.Body(data)
			ups, ended = st.finishLocked(nil)
		default:
			st.emitted += int64(len(data))
			if !st.inv.Sink.Chunk(data) {
				ups, ended = st.finishLocked(ErrClientGone)
				status = abi.StatusClientGone
			}
		}
	default:
		status = abi.StatusInvalid
	}
	st.mu.Unlock()
	if ended {
		st.afterEnd(ups)
	}
	return status
}

// endedStatus is what a host function answers for a stream that is over.
func endedStatus(err error) abi.Status {
	if err == ErrClientGone {
		return abi.StatusClientGone
	}
	return abi.StatusEnded
}

// fail is the fail host function.
func (st *Stream) fail(status int, body []byte) abi.Status {
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return endedStatus(st.err)
	}
	ups, _ := st.finishLocked(&Failure{Status: status, Body: append([]byte(nil), body...), RetryAfter: st.retryAfter})
	st.mu.Unlock()
	st.afterEnd(ups)
	return abi.StatusOK
}

// finish is the finish host function.
func (st *Stream) finish() abi.Status {
	if !st.inv.Op.Streams() {
		return abi.StatusInvalid
	}
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return endedStatus(st.err)
	}
	ups, _ := st.finishLocked(nil)
	st.mu.Unlock()
	st.afterEnd(ups)
	return abi.StatusOK
}

// relayChunk sends an upstream event to the client as it is (BodyRelay);
// false once the stream is over.
func (st *Stream) relayChunk(data []byte) bool {
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return false
	}
	var ups []*upstream
	ended := false
	if st.overLimits(len(data)) {
		ups, ended = st.finishLocked(ErrOutputLimit)
	} else {
		st.emitted += int64(len(data))
		if !st.inv.Sink.Chunk(data) {
			ups, ended = st.finishLocked(ErrClientGone)
		}
	}
	st.mu.Unlock()
	if ended {
		st.afterEnd(ups)
		return false
	}
	return true
}

// relayBody answers the stream with an upstream body as it is.
func (st *Stream) relayBody(body []byte) {
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return
	}
	var ups []*upstream
	if st.overLimits(len(body)) {
		ups, _ = st.finishLocked(ErrOutputLimit)
	} else {
		st.emitted += int64(len(body))
		st.inv.Sink.Body(body)
		ups, _ = st.finishLocked(nil)
	}
	st.mu.Unlock()
	st.afterEnd(ups)
}

// waitWritable waits while the client has StreamBufferBytes or more waiting
// (backpressure); false if stop ended first.
func (st *Stream) waitWritable(stop <-chan struct{}) bool {
	for {
		st.mu.Lock()
		if st.ended {
			st.mu.Unlock()
			return false
		}
		if int64(st.inv.Sink.Backlog()) < st.lim.StreamBufferBytes {
			st.mu.Unlock()
			return true
		}
		drained := st.inv.Sink.Drained()
		st.mu.Unlock()
		select {
		case <-drained:
		case <-stop:
			return false
		}
	}
}
