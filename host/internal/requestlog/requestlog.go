// Package requestlog turns every finished /v1 request into one database row
// without putting a database write on the request path.
//
// The request path calls [Logger.Log], which only copies the [Entry] into a
// bounded in-memory queue. One background goroutine owns the [Sink] (SQLite
// has a single writer connection, so one writer is all there can be): it
// takes entries from the queue in batches of up to Options.BatchSize and
// hands each batch to the sink. Entries reach the sink in the order they
// were queued.
//
// The writer wakes every Options.FlushEvery and writes whatever is queued,
// so no entry waits much longer than that; in between, Log wakes it only
// when a full batch is waiting. Log does not wake it for every entry
// because waking a parked goroutine is what a send costs most: measured on
// two cores, a send to a channel whose reader sleeps took about 2.8 µs,
// against about 50 ns when nobody had to be woken. With the writer woken
// this way, Log takes about 0.2 µs and allocates nothing
// (BenchmarkLog/paced; about 3 µs when every entry woke the writer), and an
// idle writer costs a few wake-ups per second.
//
// # When the queue is full
//
// A full queue means the sink has fallen behind: the disk is slow, the
// database is locked, or a write is being retried. Options.Policy says what
// Log does then:
//
//   - DropNewest (the default) drops the entry being logged and returns at
//     once. The request path never waits for the database, so a database
//     stall cannot turn into request latency or, worse, into requests piling
//     up behind a lock. The price is that some rows are missing.
//   - Block waits up to Options.BlockTimeout for room in the queue, then
//     drops the entry. It trades a bounded amount of latency for fewer lost
//     rows when the sink only hiccups.
//
// Nothing is lost silently. Every dropped entry is counted in
// [Stats].Dropped, and the first drop after a quiet period logs a warning
// with the running count; while drops continue, the warning repeats at most
// once every 10 seconds. An operator sees both that rows are missing and
// how many.
//
// # When the sink fails
//
// A failed WriteBatch is tried again after 100 ms, then after a pause that
// doubles each time up to 5 s, for Options.Attempts tries in all (5 by
// default). A batch that fails every try is counted in [Stats].Failed and
// reported as an error in the log with the number of entries lost. The
// queue keeps accepting entries meanwhile, up to its bound. A database
// that is away (Options.Unavailable: unreachable, restarting) is waited
// for without counting tries: the rows are written once it is back.
//
// # Counters
//
// Queued counts entries accepted into the queue; Dropped counts entries
// refused by Log (queue full, or the logger closed) and never queued.
// Every queued entry ends up either Written or Failed, so at any moment
//
//	Queued = Written + Failed + entries still queued or held by the writer
//
// and once [Logger.Close] has returned nil, Queued = Written + Failed.
//
// # Shutting down
//
// [Logger.Close] stops accepting entries, writes everything already queued
// and returns. If its context ends first, it gives up, reports how many
// entries were left unwritten and cancels the context passed to the sink.
package requestlog

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// Entry is one finished request: its row of the request log, as the
// handler fills it and the store writes it (store.RequestLog, also what the
// rollups sum and the log queries read), with the bodies as they were
// sent. The sink redacts those into the row's RequestBody and
// ResponseBody; the handler leaves these empty.
//
// Log keeps the Entry as it is, so the caller must not modify the byte
// slices after passing them to Log.
type Entry struct {
	store.RequestLog
	// RequestBytes and ResponseBytes are set only when body logging is
	// on: the first bytes of each body, up to the cap, as they were sent,
	// not yet redacted. RequestSize and ResponseSize are the bodies' full
	// sizes, larger than the slices when the cap cut them.
	RequestBytes  []byte
	ResponseBytes []byte
	RequestSize   int
	ResponseSize  int
}

// Sink stores batches of entries. It is called from one goroutine only, so
// an implementation needs no locking of its own.
//
// WriteBatch either stores the whole batch and returns nil, or returns an
// error; a batch that failed is offered again, whole, after a pause. The
// slice is reused once WriteBatch returns: a sink must copy anything it
// keeps. ctx is cancelled when [Logger.Close] gives up waiting.
type Sink interface {
	WriteBatch(ctx context.Context, batch []Entry) error
}

// Broadcaster is told about every entry right after it is queued, on the
// goroutine that called Log (the dashboard's live view implements it).
// Publish is on the request path: it must not block, and it must be safe
// for concurrent use. Dropped entries are not published, and published
// entries carry no bodies: those are redacted only by the sink.
type Broadcaster interface {
	Publish(Entry)
}

// OverflowPolicy says what Log does when the queue is full.
type OverflowPolicy int

const (
	// DropNewest drops the entry being logged, counts it and returns at
	// once: the request path never waits. This is the default.
	DropNewest OverflowPolicy = iota
	// Block waits up to Options.BlockTimeout for room in the queue, then
	// drops the entry and counts it.
	Block
)

// String returns the policy's name as it appears in the log: "drop_newest"
// or "block".
func (p OverflowPolicy) String() string {
	switch p {
	case DropNewest:
		return "drop_newest"
	case Block:
		return "block"
	default:
		return fmt.Sprintf("OverflowPolicy(%d)", int(p))
	}
}

// Options configures a Logger. A zero or negative number or duration means
// the default.
type Options struct {
	// QueueSize is how many entries can wait for the sink. Default 10000.
	QueueSize int
	// BatchSize is the most entries handed to one WriteBatch. Default
	// 1024: the store's cost per batch (a commit, and an upsert per usage
	// rollup group) is spread over more rows when the writer is busy; at
	// 256 a row cost it 5 to 20 % more CPU in our runs
	// (BenchmarkInsertLogs in host/internal/store). A quiet proxy writes
	// smaller batches anyway, every FlushEvery.
	BatchSize int
	// FlushEvery is how often the writer writes what is queued, even if it
	// is less than a full batch: it bounds how long an entry waits before
	// it reaches the sink, the write itself aside. Default 200ms.
	FlushEvery time.Duration

	// Policy is what Log does when the queue is full. Default DropNewest.
	Policy OverflowPolicy
	// BlockTimeout is how long Log waits for room under the Block policy
	// before dropping the entry. Default 50ms.
	BlockTimeout time.Duration

	// Attempts is how many times one batch is tried before it is counted as
	// failed. Default 5.
	Attempts int
	// RetryBackoff is the pause after the first failed try; each further
	// pause doubles, up to MaxRetryBackoff. Defaults 100ms and 5s.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// Unavailable, when set, tells an error of a database that is away
	// (unreachable, restarting) from one that refuses the batch. A batch
	// that fails because the database is away is tried again, every
	// MaxRetryBackoff at most, until it is written or Close gives up; tries
	// are not counted, and the queue takes new entries meanwhile, up to
	// its bound.
	Unavailable func(error) bool

	// Broadcaster, if set, receives every queued entry.
	Broadcaster Broadcaster
	// Logger receives drop warnings and write errors. Default slog.Default().
	Logger *slog.Logger
}

// Defaults applied by New.
const (
	DefaultQueueSize       = 10000
	DefaultBatchSize       = 1024
	DefaultFlushEvery      = 200 * time.Millisecond
	DefaultBlockTimeout    = 50 * time.Millisecond
	DefaultAttempts        = 5
	DefaultRetryBackoff    = 100 * time.Millisecond
	DefaultMaxRetryBackoff = 5 * time.Second
)

// warnEvery is the shortest interval between two drop warnings.
const warnEvery = 10 * time.Second

func (o Options) withDefaults() Options {
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = DefaultFlushEvery
	}
	if o.BlockTimeout <= 0 {
		o.BlockTimeout = DefaultBlockTimeout
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultAttempts
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = DefaultRetryBackoff
	}
	if o.MaxRetryBackoff <= 0 {
		o.MaxRetryBackoff = DefaultMaxRetryBackoff
	}
	if o.MaxRetryBackoff < o.RetryBackoff {
		o.MaxRetryBackoff = o.RetryBackoff
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Stats is a snapshot of a Logger's counters. Each counter is read on its
// own, so while entries are flowing the figures may be a few entries apart.
type Stats struct {
	// Queued counts entries accepted into the queue.
	Queued int64
	// Written counts entries the sink stored.
	Written int64
	// Dropped counts entries Log refused: the queue was full, or the
	// logger was closed. They were never queued.
	Dropped int64
	// Failed counts queued entries that were never stored: their batch
	// failed every try, or Close gave up before writing them.
	Failed int64
	// Batches counts successful WriteBatch calls.
	Batches int64
	// QueueLen is how many entries are waiting in the queue now. Entries
	// the writer has already taken into a batch are not included.
	QueueLen int
}

// Logger is the asynchronous request log. Create it with New; its methods
// are safe for concurrent use.
type Logger struct {
	sink Sink
	opts Options
	log  *slog.Logger

	// mu guards closed and the closing of queue: Log holds it for reading
	// while it sends, Close for writing while it closes the channel, so no
	// send can race the close.
	mu     sync.RWMutex
	closed bool
	queue  chan Entry

	// kick wakes the writer early (capacity 1, sent without waiting). Log
	// sends it once kickAt entries are queued; Close sends it too.
	kick   chan struct{}
	kickAt int

	// ctx is passed to the sink; cancel is called when Close gives up.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the writer goroutine has returned

	closeOnce          sync.Once
	failedBeforeClosed int64 // Failed when Close began; set once, under mu

	queued, written, dropped, failed, batches atomic.Int64
	away                                      atomic.Bool // the last write found the database away

	// Drop warnings: start anchors a monotonic clock, lastWarn is the time
	// of the last warning since start, warnedAt the drop count it reported.
	start    time.Time
	lastWarn atomic.Int64
	warnedAt atomic.Int64
}

// New starts a Logger writing to sink. Call Close to stop it.
func New(sink Sink, o Options) *Logger {
	if sink == nil {
		panic("requestlog: New called with a nil sink")
	}
	o = o.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	l := &Logger{
		sink:   sink,
		opts:   o,
		log:    o.Logger,
		queue:  make(chan Entry, o.QueueSize),
		kick:   make(chan struct{}, 1),
		kickAt: min(o.BatchSize, o.QueueSize),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		start:  time.Now(),
	}
	l.lastWarn.Store(-int64(warnEvery))
	go l.run()
	return l
}

// Log queues e for writing and returns without waiting for the sink. When
// the queue is full it follows Options.Policy: under DropNewest it drops e
// at once, under Block it waits up to Options.BlockTimeout first. After
// Close, e is dropped. Every dropped entry is counted in Stats.Dropped.
func (l *Logger) Log(e Entry) {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		l.drop("closed")
		return
	}
	ok := l.enqueue(e)
	if ok {
		// Counted before the lock is released, so that Close, which takes
		// the lock for writing, sees the final figure.
		l.queued.Add(1)
	}
	l.mu.RUnlock()

	if !ok {
		l.drop("queue full")
		return
	}
	if len(l.queue) >= l.kickAt {
		l.wake()
	}
	if b := l.opts.Broadcaster; b != nil {
		e.RequestBytes, e.ResponseBytes = nil, nil
		b.Publish(e)
	}
}

// enqueue sends e to the queue according to the overflow policy and
// reports whether it was queued. The caller holds mu for reading.
func (l *Logger) enqueue(e Entry) bool {
	select {
	case l.queue <- e:
		return true
	default:
	}
	if l.opts.Policy != Block {
		return false
	}
	l.wake() // the queue is full: make room as soon as possible
	t := time.NewTimer(l.opts.BlockTimeout)
	defer t.Stop()
	select {
	case l.queue <- e:
		return true
	case <-t.C:
		return false
	}
}

// wake asks the writer to run now, unless it has been asked already.
func (l *Logger) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// drop counts a dropped entry and warns, unless it already warned in the
// last warnEvery.
func (l *Logger) drop(reason string) {
	n := l.dropped.Add(1)
	now := int64(time.Since(l.start))
	last := l.lastWarn.Load()
	if now-last < int64(warnEvery) || !l.lastWarn.CompareAndSwap(last, now) {
		return
	}
	since := n - l.warnedAt.Swap(n)
	l.log.Warn("request log: dropping entries",
		"reason", reason,
		"policy", l.opts.Policy.String(),
		"queue_size", l.opts.QueueSize,
		"dropped_since_last_warning", since,
		"dropped_total", n)
}

// Close stops accepting entries and waits until every queued entry has been
// handed to the sink. It returns nil when all of them were written, and an
// error saying how many were not when some batches failed.
//
// If ctx ends first, Close gives up: it cancels the context passed to the
// sink, the entries not yet written are counted as Failed, and the error
// (which wraps ctx.Err()) says how many were left.
//
// Under the Block policy, Close first waits for the Log calls that are
// waiting for room, at most Options.BlockTimeout. Close may be called more
// than once; later calls wait for the same end.
func (l *Logger) Close(ctx context.Context) error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.failedBeforeClosed = l.failed.Load()
		close(l.queue) // the writer drains what is left, then returns
		l.mu.Unlock()
		l.wake()
	})

	select {
	case <-l.done:
		return l.closeResult()
	default:
	}
	select {
	case <-l.done:
		return l.closeResult()
	case <-ctx.Done():
		left := l.queued.Load() - l.written.Load() - l.failed.Load()
		l.cancel()
		return fmt.Errorf("requestlog: close: %d entries not written: %w", left, ctx.Err())
	}
}

// closeResult reports the entries that failed after Close began. The writer
// has returned, so the counters are final.
func (l *Logger) closeResult() error {
	if n := l.failed.Load() - l.failedBeforeClosed; n > 0 {
		return fmt.Errorf("requestlog: close: %d entries could not be written", n)
	}
	return nil
}

// Stats returns the current counters.
func (l *Logger) Stats() Stats {
	return Stats{
		Queued:   l.queued.Load(),
		Written:  l.written.Load(),
		Dropped:  l.dropped.Load(),
		Failed:   l.failed.Load(),
		Batches:  l.batches.Load(),
		QueueLen: len(l.queue),
	}
}

// run is the writer goroutine: the only caller of the sink. It returns when
// the queue is closed and drained, or when Close gives up.
func (l *Logger) run() {
	defer close(l.done)
	tick := time.NewTicker(l.opts.FlushEvery)
	defer tick.Stop()

	// batch carries a partial batch from a kick to the next tick, so that
	// under load the sink gets full batches.
	batch := make([]Entry, 0, l.opts.BatchSize)
	for {
		flushPartial := false
		select {
		case <-tick.C:
			flushPartial = true
		case <-l.kick:
		}
		for {
			var open bool
			batch, open = l.fill(batch)
			full := len(batch) == cap(batch)
			if full || (len(batch) > 0 && (flushPartial || !open)) {
				l.write(batch)
				clear(batch) // let the bodies be collected
				batch = batch[:0]
			}
			if !open {
				return
			}
			if l.ctx.Err() != nil {
				l.abandon(len(batch))
				return
			}
			if !full {
				break // the queue is empty
			}
		}
	}
}

// fill moves queued entries into batch until it is full or the queue is
// empty. open is false once the queue is closed and empty.
func (l *Logger) fill(batch []Entry) (_ []Entry, open bool) {
	for len(batch) < cap(batch) {
		select {
		case e, ok := <-l.queue:
			if !ok {
				return batch, false
			}
			batch = append(batch, e)
		default:
			return batch, true
		}
	}
	return batch, true
}

// write hands batch to the sink, retrying with a growing pause, and counts
// the outcome.
func (l *Logger) write(batch []Entry) {
	pause := l.opts.RetryBackoff
	var err error
	attempt := 1
	for ; ; attempt++ {
		err = l.sink.WriteBatch(l.ctx, batch)
		if err == nil {
			l.written.Add(int64(len(batch)))
			l.batches.Add(1)
			if l.away.Swap(false) {
				l.log.Info("request log: the database answers again", "entries", len(batch))
			}
			return
		}
		if l.ctx.Err() != nil {
			break
		}
		if l.opts.Unavailable != nil && l.opts.Unavailable(err) {
			// The database is away, not refusing these rows: wait for it
			// without counting tries, while the queue holds what comes.
			attempt = 0
			if !l.away.Swap(true) {
				l.log.Warn("request log: the database does not answer; rows wait in the queue until it does",
					"entries", len(batch), "err", err)
			}
		} else if attempt >= l.opts.Attempts {
			break
		} else {
			l.log.Debug("request log: batch write failed, will retry",
				"entries", len(batch), "attempt", attempt, "retry_in", pause, "err", err)
		}
		if !l.sleep(pause) {
			break
		}
		pause = min(pause*2, l.opts.MaxRetryBackoff)
	}
	total := l.failed.Add(int64(len(batch)))
	l.log.Error("request log: batch lost",
		"entries", len(batch), "attempts", attempt, "failed_total", total, "err", err)
}

// sleep waits for d and reports whether it did; it returns false early when
// Close gives up.
func (l *Logger) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.ctx.Done():
		return false
	}
}

// abandon counts as failed the entries Close gave up on: the pending ones
// in the batch and all those still queued. The queue is closed by then, so
// draining it ends.
func (l *Logger) abandon(pending int) {
	n := int64(pending)
	for range l.queue {
		n++
	}
	if n == 0 {
		return
	}
	total := l.failed.Add(n)
	l.log.Error("request log: close gave up, entries not written",
		"entries", n, "failed_total", total)
}
