package plugin

import (
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// scheduler places a version's streams on its instances (workers) and
// starts and closes instances as demand changes.
//
// A new stream goes to the instance holding the fewest streams among those
// that take new ones. A new instance starts when there is none, or when
// callbacks are waiting on the chosen one and fewer than target instances
// run (target is GOMAXPROCS: more would only share the same cores), or to
// keep MinInstances; beyond target, only when every instance is full. A
// stream never moves.
type scheduler struct {
	v      *Version
	target int

	mu      sync.Mutex
	workers []*worker // live: starting, running or draining
	nextID  int
	retired bool
	closed  bool
	stop    chan struct{}
	rate    float64
	window  [rateWindow]int64 // callbacks counted at each of the last ticks

	created, discarded, failures, callbacks, streams atomic.Int64
	// traps and timeouts count the callbacks that failed, by cause.
	traps, timeouts atomic.Int64
	// took counts the callbacks by how long they ran, in the buckets of
	// CallbackBuckets (the last one unbounded), and their total time.
	took    [len(CallbackBuckets) + 1]atomic.Int64
	tookSum atomic.Int64 // nanoseconds
}

// CallbackBuckets are the upper bounds of the callback duration buckets
// that Stats reports: a callback runs for microseconds, and its deadline is
// 100 ms of CPU.
var CallbackBuckets = [...]time.Duration{
	10 * time.Microsecond, 25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond,
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond,
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
}

// observe counts a callback that ran for d.
func (s *scheduler) observe(d time.Duration) {
	i := 0
	for i < len(CallbackBuckets) && d > CallbackBuckets[i] {
		i++
	}
	s.took[i].Add(1)
	s.tookSum.Add(int64(d))
}

const rateWindow = 10 // seconds of callbacks/s

// tick is how often idle instances are looked for and the rate updated.
var tick = time.Second

func newScheduler(v *Version) *scheduler {
	s := &scheduler{v: v, target: max(1, runtime.GOMAXPROCS(0)), stop: make(chan struct{})}
	go s.loop()
	return s
}

// warm starts one instance and waits until it is ready or failed.
func (s *scheduler) warm() error {
	s.mu.Lock()
	w := s.spawnLocked()
	s.mu.Unlock()
	<-w.ready
	return w.initErr
}

// assign picks the worker for a new stream and counts the stream on it.
func (s *scheduler) assign() (*worker, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.retired || s.closed {
		return nil, ErrRetired
	}
	l := &s.v.limits
	var best *worker
	accepting := 0
	for _, w := range s.workers {
		if !w.accepting() {
			continue
		}
		accepting++
		n := w.nstreams.Load()
		if int(n) >= l.MaxStreamsPerInstance {
			continue
		}
		if best == nil || n < best.nstreams.Load() || (n == best.nstreams.Load() && w.queued.Load() < best.queued.Load()) {
			best = w
		}
	}
	grow := best == nil || accepting < l.MinInstances || (accepting < s.target && best.queued.Load() > 0)
	if grow && len(s.workers) < l.MaxInstances {
		best = s.spawnLocked()
	}
	if best == nil {
		return nil, ErrBusy
	}
	best.nstreams.Add(1)
	return best, nil
}

// spawnLocked starts a worker; it instantiates the module on its own
// goroutine, so the caller does not wait for the cold start (the stream's
// first callback does).
func (s *scheduler) spawnLocked() *worker {
	s.nextID++
	w := newWorker(s, s.nextID)
	s.workers = append(s.workers, w)
	s.created.Add(1)
	go w.loop()
	return w
}

// remove forgets a worker that has exited.
func (s *scheduler) remove(w *worker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.workers {
		if x == w {
			s.workers = removeWorker(s.workers, w)
			s.discarded.Add(1)
			return
		}
	}
}

func (s *scheduler) loop() {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.tick()
		}
	}
}

// tick updates the callback rate and closes instances idle for longer than
// IdleTimeout, down to MinInstances (all of them once retired).
func (s *scheduler) tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	copy(s.window[:], s.window[1:])
	s.window[rateWindow-1] = s.callbacks.Load()
	first := 0
	for first < rateWindow-1 && s.window[first] == 0 {
		first++
	}
	if n := rateWindow - 1 - first; n > 0 {
		s.rate = float64(s.window[rateWindow-1]-s.window[first]) / (float64(n) * tick.Seconds())
	}
	keep := s.v.limits.MinInstances
	if s.retired {
		keep = 0
	}
	idleFor := s.v.limits.IdleTimeout
	now := time.Now().UnixNano()
	accepting := 0
	for _, w := range s.workers {
		if w.accepting() {
			accepting++
		}
	}
	// Keep MinInstances warm (an instance that failed or was recycled is
	// replaced here, before a stream needs it).
	for !s.retired && accepting < keep && len(s.workers) < s.v.limits.MaxInstances {
		s.spawnLocked()
		accepting++
	}
	for _, w := range append([]*worker(nil), s.workers...) {
		if accepting <= keep {
			break
		}
		if since := w.idleSince.Load(); since != 0 && (s.retired || time.Duration(now-since) >= idleFor) && w.closeIfIdle() {
			accepting--
		}
	}
}

// retire stops placing streams; idle instances close at the next tick.
func (s *scheduler) retire() {
	s.mu.Lock()
	s.retired = true
	s.mu.Unlock()
}

// close stops the scheduler and every worker; the version has no stream
// left.
func (s *scheduler) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	ws := append([]*worker(nil), s.workers...)
	s.mu.Unlock()
	for _, w := range ws {
		w.shutdown()
	}
	for _, w := range ws {
		<-w.exited
	}
}

func (s *scheduler) stats() Stats {
	s.mu.Lock()
	ws := append([]*worker(nil), s.workers...)
	rate := s.rate
	s.mu.Unlock()
	st := Stats{
		Instances: len(ws), Created: s.created.Load(), Discarded: s.discarded.Load(), Failures: s.failures.Load(),
		Callbacks: s.callbacks.Load(), CallbacksPerSecond: rate, StreamsTotal: s.streams.Load(),
		Traps: s.traps.Load(), Timeouts: s.timeouts.Load(),
		PerInstance: make([]InstanceStats, 0, len(ws)),
	}
	st.CallbackDurations.Counts = make([]int64, len(s.took))
	for i := range s.took {
		st.CallbackDurations.Counts[i] = s.took[i].Load()
	}
	st.CallbackDurations.Sum = time.Duration(s.tookSum.Load())
	for _, w := range ws {
		in := InstanceStats{ID: w.id, Streams: int(w.nstreams.Load()), Queued: int(w.queued.Load()),
			Callbacks: w.calls.Load(), Pages: w.pages.Load(), Draining: !w.accepting()}
		st.Streams += in.Streams
		st.Queued += in.Queued
		st.PerInstance = append(st.PerInstance, in)
	}
	sort.Slice(st.PerInstance, func(i, j int) bool { return st.PerInstance[i].ID < st.PerInstance[j].ID })
	return st
}
