package plugin

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// A worker owns one instance of a version and the goroutine that runs its
// callbacks, one at a time: wazero does not serialise calls into a module,
// and a Go guest could not take two at once anyway. Everything else talks
// to it through its queue.
type worker struct {
	id int
	s  *scheduler
	v  *Version

	nstreams  atomic.Int32 // streams assigned and not yet done
	queued    atomic.Int32 // tasks waiting in the queue
	calls     atomic.Int64 // callbacks run
	pages     atomic.Uint32
	idleSince atomic.Int64 // unix nanos when nstreams fell to 0; 0 while busy

	mu      sync.Mutex
	queue   []task
	head    int // index of the next task in queue
	state   workerState
	wake    chan struct{}
	streams map[int32]*Stream // assigned and not yet done
	nextID  int32

	ready   chan struct{} // closed once the instance started (or failed to)
	initErr error
	exited  chan struct{} // closed when the goroutine returns

	// Used only on the worker's goroutine.
	mod     api.Module
	fns     [len(exportOrder)]api.Function
	ctx     context.Context
	handles map[int32]*upstream
	handleN int32
	cur     *Stream   // the stream of the running callback
	data    []byte    // what data_read returns during the running callback
	inHead  *upstream // the upstream whose head callback runs (http_body is allowed)
	stack   []uint64

	watchdog *time.Timer // fires at the running callback's deadline
	watch    watch       // what the watchdog needs of the running callback
	pinned   struct {
		locked bool          // the goroutine is locked to its thread
		clock  threadClock   // that thread's CPU clock
		ok     bool          // which can be read
		cpu    time.Duration // its reading
		at     time.Duration // taken then, since epoch
	}
}

// watch is the running callback as its watchdog sees it. The deadline is
// CPU time where the OS counts it per thread: a callback that waits for a
// core on a busy machine (thousands of connections opening at once) has
// not used its time, and cutting it would fail every stream on the
// instance. Wall time still bounds it, at wallFactor times its limit.
type watch struct {
	mu       sync.Mutex
	running  bool
	deadline time.Duration // wall time the watchdog next looks, since epoch
	wallEnd  time.Duration // wall time it is stopped at whatever its CPU time
	limit    time.Duration // CPU time it may use
	clock    threadClock   // the CPU clock of the thread running it
	cpu0     time.Duration // that clock when it began, or later (see call)
	cpuOK    bool          // the clock can be read
}

// wallFactor bounds a callback's wall time as a multiple of the CPU limit
// (CallbackTimeout; the allowance for a large input is added once).
// A guest cannot wait (host functions do not block, and a sleep spins), so
// a callback short of CPU time yet this late has been starved that long.
const wallFactor = 50

type workerState uint8

const (
	running  workerState = iota
	draining             // recycled: takes no new stream, exits when its last one is done
	closing              // asked to exit now (idle, or its version closed)
	dead                 // exited
)

// exportOrder indexes worker.fns.
var exportOrder = [...]string{abi.ExportOnStart, abi.ExportOnHTTPHead, abi.ExportOnHTTPData,
	abi.ExportOnHTTPEnd, abi.ExportOnImage, abi.ExportOnTimer, abi.ExportOnDone}

const (
	fnStart = iota
	fnHead
	fnData
	fnEnd
	fnImage
	fnTimer
	fnDone
)

type taskKind uint8

const (
	tStart taskKind = iota
	tHead
	tData
	tEnd
	tImage
	tTimer
	tDone
)

// task is one callback to run. ack, when set, is signalled once it ran (or
// was dropped): an upstream's reader waits for it before reading on.
type task struct {
	kind taskKind
	st   *Stream
	u    *upstream
	arg  int32
	data []byte
	ack  chan struct{}
}

type workerKey struct{}

// signal wakes the reader waiting for a task (at most one waits per
// upstream, on a channel of capacity one).
func signal(ack chan struct{}) {
	if ack == nil {
		return
	}
	select {
	case ack <- struct{}{}:
	default:
	}
}

func newWorker(s *scheduler, id int) *worker {
	w := &worker{id: id, s: s, v: s.v, wake: make(chan struct{}, 1), streams: map[int32]*Stream{},
		ready: make(chan struct{}), exited: make(chan struct{}), handles: map[int32]*upstream{},
		stack: make([]uint64, 4)}
	w.idleSince.Store(time.Now().UnixNano())
	w.ctx = context.WithValue(context.Background(), workerKey{}, w)
	w.watchdog = time.AfterFunc(time.Hour, w.bark)
	w.watchdog.Stop()
	return w
}

// epoch is the origin of the watchdog's deadlines.
var epoch = time.Now()

// bark runs when a callback's time is up: if a callback is still running
// past its deadline (not a later one, which a late timer must not cut),
// the guest is interrupted where it is; its call returns a deadline error
// and the instance dies.
func (w *worker) bark() {
	c := &w.watch
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Since(epoch)
	if !c.running {
		return
	}
	if now < c.deadline {
		w.watchdog.Reset(c.deadline - now)
		return
	}
	if c.cpuOK && now < c.wallEnd {
		if used, ok := c.clock.read(); ok && used-c.cpu0 < c.limit {
			// Waited for a core rather than ran: look again once it could
			// have used the rest of its time.
			rest := c.limit - (used - c.cpu0)
			c.deadline = now + rest
			w.watchdog.Reset(rest)
			return
		}
	}
	c.running = false
	experimental.InterruptModule(w.mod, sys.ExitCodeDeadlineExceeded)
}

func workerOf(ctx context.Context) *worker {
	w, _ := ctx.Value(workerKey{}).(*worker)
	return w
}

func (w *worker) accepting() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state == running
}

// add registers a stream assigned by the scheduler and queues its start;
// false if the worker died in between.
func (w *worker) add(st *Stream) bool {
	w.mu.Lock()
	if w.state == dead {
		w.mu.Unlock()
		return false
	}
	w.nextID++
	st.id = w.nextID
	w.streams[st.id] = st
	w.idleSince.Store(0)
	w.mu.Unlock()
	return w.enqueue(task{kind: tStart, st: st})
}

// stream returns a stream of this worker that has not been done with.
func (w *worker) stream(id int32) *Stream {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.streams[id]
}

// enqueue adds a task; false once the worker is dead (the task's stream has
// been ended by then).
func (w *worker) enqueue(t task) bool {
	w.mu.Lock()
	if w.state == dead {
		w.mu.Unlock()
		signal(t.ack)
		return false
	}
	w.queue = append(w.queue, t)
	w.queued.Add(1)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return true
}

// next returns the next task, waiting for one; false when the worker must
// exit.
func (w *worker) next() (task, bool) {
	w.mu.Lock()
	for {
		if w.head < len(w.queue) {
			t := w.queue[w.head]
			w.queue[w.head] = task{}
			w.head++
			if w.head == len(w.queue) {
				w.queue, w.head = w.queue[:0], 0
			} else if w.head > 1024 && w.head*2 > len(w.queue) {
				n := copy(w.queue, w.queue[w.head:])
				w.queue, w.head = w.queue[:n], 0
			}
			w.queued.Add(-1)
			w.mu.Unlock()
			return t, true
		}
		if w.state == closing || (w.state == draining && len(w.streams) == 0) {
			w.mu.Unlock()
			return task{}, false
		}
		w.mu.Unlock()
		w.unpin()
		<-w.wake
		w.mu.Lock()
	}
}

// shutdown asks the worker to exit once its queue is empty.
func (w *worker) shutdown() {
	w.mu.Lock()
	if w.state != dead {
		w.state = closing
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// closeIfIdle shuts an instance with no stream down; false if it got one
// meanwhile. Called under the scheduler's lock, so no stream can be
// assigned to it concurrently.
func (w *worker) closeIfIdle() bool {
	w.mu.Lock()
	ok := w.state == running && len(w.streams) == 0 && w.nstreams.Load() == 0
	if ok {
		w.state = closing
	}
	w.mu.Unlock()
	if ok {
		w.s.workers = removeWorker(w.s.workers, w)
		w.s.discarded.Add(1)
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return ok
}

// removeWorker deletes w from ws in place, clearing the freed slot so the
// backing array does not keep a closed instance (and its memory) alive.
func removeWorker(ws []*worker, w *worker) []*worker {
	for i, x := range ws {
		if x == w {
			copy(ws[i:], ws[i+1:])
			ws[len(ws)-1] = nil
			return ws[:len(ws)-1]
		}
	}
	return ws
}

// loop is the worker's goroutine.
func (w *worker) loop() {
	defer close(w.exited)
	defer w.unpin()
	if err := w.instantiate(); err != nil {
		w.initErr = err
		close(w.ready)
		w.v.log.Warn("plugin instance failed to start", "err", err)
		w.die(fmt.Errorf("%w: %v", ErrTrap, err), false)
		return
	}
	close(w.ready)
	for {
		t, ok := w.next()
		if !ok {
			break
		}
		if err := w.run(t); err != nil {
			w.v.log.Warn("plugin instance failed; its streams end", "instance", w.id, "err", firstLine(err.Error()))
			w.die(err, true)
			return
		}
	}
	w.exit()
}

// instantiate starts the instance and runs _initialize, within 30 s so a
// plugin that loops in init cannot hang the loader.
func (w *worker) instantiate() error {
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions(abi.ExportInitialize).
		WithStdout(w.v.out.stream("stdout")).
		WithStderr(w.v.out.stream("stderr")).
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader)
	// No WithSysNanosleep: a callback may not wait, and a guest that sleeps
	// anyway spins until its callback deadline instead of holding the
	// instance while it sleeps.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mod, err := w.v.runtime.InstantiateModule(experimental.WithMemoryAllocator(ctx, memoryAllocator), w.v.compiled, cfg)
	if err != nil {
		return err
	}
	w.mod = mod
	for i, name := range exportOrder {
		if w.v.exported[name] {
			w.fns[i] = mod.ExportedFunction(name)
		}
	}
	w.pages.Store(mod.Memory().Size() / 65536)
	return nil
}

// exit closes a healthy instance that has no stream left.
func (w *worker) exit() {
	w.mu.Lock()
	w.state = dead
	w.mu.Unlock()
	closeModule(w.mod)
	w.s.remove(w)
}

// closeModule closes an instance's module and frees its memory. A watchdog
// that fired just as a callback returned has marked the module closed with
// its resources left to the call, which was already over: Close alone would
// then see a closed module and keep them.
func closeModule(mod api.Module) {
	if m, ok := mod.(interface{ FailIfClosed() error }); ok {
		_ = m.FailIfClosed()
	}
	mod.Close(context.Background())
}

// die ends every stream of a failed instance with err and closes it. Its
// queued tasks are dropped; the readers waiting on them see their streams
// end.
func (w *worker) die(err error, failed bool) {
	if failed {
		// Counted before its streams see the error, so whoever reads the
		// stats on seeing it finds the failure.
		w.s.failures.Add(1)
	}
	w.mu.Lock()
	w.state = dead
	streams := w.streams
	w.streams = map[int32]*Stream{}
	queue := w.queue[w.head:]
	w.queue, w.head = nil, 0
	w.mu.Unlock()
	for _, t := range queue {
		signal(t.ack)
	}
	for _, st := range streams {
		st.end(err)
		w.done(st)
	}
	if w.mod != nil {
		closeModule(w.mod)
	}
	w.s.remove(w)
}

// done forgets a stream whose on_done has run (or whose instance died).
func (w *worker) done(st *Stream) {
	for _, h := range st.handlesSeen() {
		delete(w.handles, h)
	}
	if w.nstreams.Add(-1) == 0 {
		w.idleSince.Store(time.Now().UnixNano())
	}
	w.s.v.release()
}

// run runs one task; an error means the instance is broken.
func (w *worker) run(t task) error {
	st := t.st
	if t.kind == tDone {
		err := w.call(fnDone, st, uint64(st.id), uint64(uint32(doneReason(st.cause()))))
		w.mu.Lock()
		delete(w.streams, st.id)
		w.mu.Unlock()
		w.done(st)
		return err
	}
	defer signal(t.ack)
	if st.isEnded() {
		return nil // answered or cancelled: only on_done is still due
	}
	if (t.kind == tHead || t.kind == tData) && w.handles[t.u.handle] != t.u {
		return nil // the guest closed the request after this was queued
	}
	var err error
	switch t.kind {
	case tStart:
		err = w.call(fnStart, st, uint64(st.id), uint64(uint32(st.inv.Op)))
	case tHead:
		w.inHead = t.u
		err = w.call(fnHead, st, uint64(st.id), uint64(uint32(t.u.handle)), uint64(uint32(t.arg)))
		w.inHead = nil
	case tData:
		w.data = t.data
		if w.data == nil {
			w.data = []byte{} // an empty body is data too
		}
		err = w.call(fnData, st, uint64(st.id), uint64(uint32(t.u.handle)), uint64(uint32(len(t.data))))
		w.data = nil
	case tEnd:
		// The handle stays known during its end callback (its headers can
		// still be read), and is forgotten after it.
		if st.release(t.u) {
			err = w.call(fnEnd, st, uint64(st.id), uint64(uint32(t.u.handle)), uint64(uint32(t.arg)))
		}
		delete(w.handles, t.u.handle)
	case tImage:
		if st.release(t.u) {
			if t.arg >= 0 {
				w.data = t.data
			}
			err = w.call(fnImage, st, uint64(st.id), uint64(uint32(t.u.handle)), uint64(uint32(t.arg)))
			w.data = nil
		}
		delete(w.handles, t.u.handle)
	case tTimer:
		if st.timerFired(t.arg) {
			err = w.call(fnTimer, st, uint64(st.id))
		}
	}
	if err != nil {
		return err
	}
	st.checkAnswered()
	w.recycleIfWorn()
	return nil
}

// call runs one export under the callback deadline. A trap, a deadline, the
// memory cap or a non-zero result is an error: the instance is unusable.
func (w *worker) call(fn int, st *Stream, args ...uint64) error {
	f := w.fns[fn]
	if f == nil {
		if fn == fnStart || fn == fnDone {
			return fmt.Errorf("%w: %s is not exported", ErrTrap, exportOrder[fn])
		}
		return nil // optional callbacks are only queued when exported
	}
	w.calls.Add(1)
	w.s.callbacks.Add(1)
	copy(w.stack, args)
	w.cur = st
	// The deadline: the instance's watchdog, armed for this callback. w.ctx
	// is never done, so wazero watches no context (a goroutine per call);
	// the watchdog interrupts the guest instead.
	limit := callbackDeadline(w.v.limits.CallbackTimeout, inputLen(fn, st, w.data))
	now := w.pin()
	c := &w.watch
	c.mu.Lock()
	c.clock, c.cpuOK = w.pinned.clock, w.pinned.ok
	// The CPU time the thread could have used since the clock was read
	// counts as this callback's: what it used is then never overstated.
	c.cpu0 = w.pinned.cpu + (now - w.pinned.at)
	c.deadline, c.limit, c.running = now+limit, limit, true
	// The wall-time backstop grows with the input's allowance, not fifty
	// times as fast.
	c.wallEnd = now + limit + w.v.limits.CallbackTimeout*(wallFactor-1)
	w.watchdog.Reset(limit)
	c.mu.Unlock()
	err := f.CallWithStack(w.ctx, w.stack)
	c.mu.Lock()
	c.running = false
	w.watchdog.Stop()
	c.mu.Unlock()
	w.s.observe(time.Since(epoch) - now)
	w.cur = nil
	if err != nil {
		var exit *sys.ExitError
		if errors.As(err, &exit) && (exit.ExitCode() == sys.ExitCodeDeadlineExceeded || exit.ExitCode() == sys.ExitCodeContextCanceled) ||
			errors.Is(err, context.DeadlineExceeded) {
			w.s.timeouts.Add(1)
			return fmt.Errorf("%w: %s ran past its %s deadline", ErrTrap, exportOrder[fn], limit.Round(time.Millisecond))
		}
		w.s.traps.Add(1)
		return fmt.Errorf("%w: %s: %v", ErrTrap, exportOrder[fn], firstLine(err.Error()))
	}
	if r := int32(w.stack[0]); r != 0 {
		w.s.traps.Add(1)
		return fmt.Errorf("%w: %s returned %d", ErrTrap, exportOrder[fn], r)
	}
	if w.mod.IsClosed() {
		// The watchdog fired as the callback returned: the module is closed
		// and cannot run the next one.
		w.s.timeouts.Add(1)
		return fmt.Errorf("%w: %s ran up to its %s deadline", ErrTrap, exportOrder[fn], limit.Round(time.Millisecond))
	}
	return nil
}

// pin locks the worker's goroutine to its OS thread, so that thread's CPU
// clock counts the callbacks the worker runs, and returns the time since
// epoch. The clock is read when the worker wakes and again when the last
// reading is more than repinAfter old, not for every callback: a reading
// is a system call, and a batch of callbacks (the events of one upstream
// read, the starts of a burst of streams) shares one.
func (w *worker) pin() time.Duration {
	now := time.Since(epoch)
	p := &w.pinned
	if !p.locked {
		runtime.LockOSThread()
		p.locked = true
	} else if now-p.at < repinAfter {
		return now
	}
	p.clock, p.cpu, p.ok = currentThreadClock()
	p.at = now
	return now
}

// unpin lets the worker's goroutine run on any thread again, before it
// waits for work.
func (w *worker) unpin() {
	if w.pinned.locked {
		w.pinned.locked = false
		runtime.UnlockOSThread()
	}
}

// repinAfter: a callback starting this long after the thread's clock was
// read reads it again.
const repinAfter = 10 * time.Millisecond

// DeadlinePerMiB is added to a callback's deadline for each MiB of input it
// is handed (the request for llmproxy_on_start, the data for
// llmproxy_on_http_data and llmproxy_on_image). Parsing scales with the
// input: a translating plugin written in Go reads a 4 MiB request in about
// 100-170 ms on the reference machine, and a large but valid request must
// not cost the instance's other streams.
const DeadlinePerMiB = 100 * time.Millisecond

// callbackDeadline is the deadline of a callback handed n bytes.
func callbackDeadline(base time.Duration, n int) time.Duration {
	return base + time.Duration(int64(DeadlinePerMiB)*int64(n)>>20)
}

// inputLen is the size of what callback fn is handed to read.
func inputLen(fn int, st *Stream, data []byte) int {
	switch fn {
	case fnStart:
		return len(st.inv.Request)
	case fnData, fnImage:
		return len(data)
	}
	return 0
}

// recycleIfWorn stops placing streams on an instance that ran many
// callbacks or whose memory grew past the limit (wasm memory never
// shrinks); it exits once its streams are done.
func (w *worker) recycleIfWorn() {
	pages := w.mod.Memory().Size() / 65536
	w.pages.Store(pages)
	if w.calls.Load() < int64(w.v.limits.RecycleAfterCalls) && pages <= w.v.limits.RecycleAfterPages {
		return
	}
	w.mu.Lock()
	if w.state == running {
		w.state = draining
	}
	w.mu.Unlock()
}

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
