package requestlog_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/requestlog"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// fakeSink records every batch it stores. It can be plugged (every call
// waits until unplug), made slow, or made to fail its first calls.
type fakeSink struct {
	mu      sync.Mutex
	batches [][]requestlog.Entry
	calls   []time.Time // start of every WriteBatch call

	failFirst int           // fail this many calls, then succeed; -1 fails always
	delay     time.Duration // sleep this long in every call

	plug    chan struct{} // if non-nil, calls wait until it is closed
	entered chan struct{} // if non-nil, receives a value as each call starts
}

var errSinkDown = errors.New("sink down")

func (s *fakeSink) WriteBatch(ctx context.Context, batch []requestlog.Entry) error {
	s.mu.Lock()
	s.calls = append(s.calls, time.Now())
	call := len(s.calls)
	s.mu.Unlock()

	if s.entered != nil {
		s.entered <- struct{}{}
	}
	if s.plug != nil {
		<-s.plug // a stuck sink: it ignores ctx on purpose
	}
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	if s.failFirst < 0 || call <= s.failFirst {
		return fmt.Errorf("write %d: %w", call, errSinkDown)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, append([]requestlog.Entry(nil), batch...))
	return nil
}

// plugged returns a sink whose calls wait until the returned function is
// called, and which reports each call's start on entered.
func plugged(t *testing.T) (*fakeSink, func()) {
	t.Helper()
	s := &fakeSink{plug: make(chan struct{}), entered: make(chan struct{}, 100)}
	var once sync.Once
	unplug := func() { once.Do(func() { close(s.plug) }) }
	t.Cleanup(unplug)
	return s, unplug
}

func (s *fakeSink) snapshot() (batches [][]requestlog.Entry, calls int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]requestlog.Entry(nil), s.batches...), len(s.calls)
}

func (s *fakeSink) entries() []requestlog.Entry {
	var all []requestlog.Entry
	batches, _ := s.snapshot()
	for _, b := range batches {
		all = append(all, b...)
	}
	return all
}

// waitEntered waits for the sink to start a call.
func (s *fakeSink) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-s.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the sink was never called")
	}
}

// entry returns an entry numbered i.
func entry(i int) requestlog.Entry {
	return requestlog.Entry{RequestLog: store.RequestLog{ID: strconv.Itoa(i), TS: int64(i) * 1000, Model: "demo-echo", Status: 200}}
}

// checkInOrder fails unless entries are numbered 0..n-1 in order.
func checkInOrder(t *testing.T, entries []requestlog.Entry, n int) {
	t.Helper()
	if len(entries) != n {
		t.Fatalf("the sink holds %d entries, want %d", len(entries), n)
	}
	for i, e := range entries {
		if e.ID != strconv.Itoa(i) {
			t.Fatalf("entry %d has ID %q: order not preserved", i, e.ID)
		}
	}
}

func closeOK(t *testing.T, l *requestlog.Logger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// logBuffer is a slog destination safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) lines(substr string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for line := range strings.Lines(b.buf.String()) {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

func newTestLogger(buf *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestBatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		batchSize int
		n         int
		wantSizes []int
	}{
		{name: "full batches then the rest", batchSize: 7, n: 100, wantSizes: append(repeat(7, 14), 2)},
		{name: "exact multiple", batchSize: 10, n: 30, wantSizes: []int{10, 10, 10}},
		{name: "fewer than one batch", batchSize: 256, n: 5, wantSizes: []int{5}},
		{name: "batch of one", batchSize: 1, n: 3, wantSizes: []int{1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sink := &fakeSink{}
			// FlushEvery is long, so batches are cut by size and by Close only.
			l := requestlog.New(sink, requestlog.Options{BatchSize: tt.batchSize, FlushEvery: time.Hour})
			for i := range tt.n {
				l.Log(entry(i))
			}
			closeOK(t, l)

			batches, _ := sink.snapshot()
			var sizes []int
			for _, b := range batches {
				sizes = append(sizes, len(b))
			}
			if fmt.Sprint(sizes) != fmt.Sprint(tt.wantSizes) {
				t.Errorf("batch sizes %v, want %v", sizes, tt.wantSizes)
			}
			checkInOrder(t, sink.entries(), tt.n)
			st := l.Stats()
			if st.Batches != int64(len(tt.wantSizes)) || st.Written != int64(tt.n) {
				t.Errorf("stats %+v, want Batches %d and Written %d", st, len(tt.wantSizes), tt.n)
			}
		})
	}
}

func repeat(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestPartialBatchFlushedAfterFlushEvery(t *testing.T) {
	t.Parallel()
	const flushEvery = 30 * time.Millisecond
	sink := &fakeSink{}
	l := requestlog.New(sink, requestlog.Options{BatchSize: 100, FlushEvery: flushEvery})
	defer closeOK(t, l)

	for i := range 3 {
		l.Log(entry(i))
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(sink.entries()) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("a partial batch was not written within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	checkInOrder(t, sink.entries(), 3)

	// A second partial batch goes the same way.
	l.Log(entry(3))
	for len(sink.entries()) < 4 {
		if time.Now().After(deadline) {
			t.Fatal("the second partial batch was not written within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	checkInOrder(t, sink.entries(), 4)
}

func TestPartialBatchWaitsForFlushEvery(t *testing.T) {
	t.Parallel()
	sink := &fakeSink{}
	l := requestlog.New(sink, requestlog.Options{BatchSize: 100, FlushEvery: time.Hour})
	for i := range 3 {
		l.Log(entry(i))
	}
	time.Sleep(50 * time.Millisecond)
	if got := len(sink.entries()); got != 0 {
		t.Errorf("%d entries of a partial batch were written before FlushEvery", got)
	}
	closeOK(t, l) // Close writes the partial batch
	checkInOrder(t, sink.entries(), 3)
}

func TestCloseDrainsEverything(t *testing.T) {
	t.Parallel()
	const n = 10000
	sink := &fakeSink{}
	l := requestlog.New(sink, requestlog.Options{})
	for i := range n {
		l.Log(entry(i))
	}
	closeOK(t, l)

	checkInOrder(t, sink.entries(), n)
	want := requestlog.Stats{Queued: n, Written: n, Batches: l.Stats().Batches}
	if st := l.Stats(); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	batches, _ := sink.snapshot()
	for i, b := range batches {
		if len(b) > requestlog.DefaultBatchSize {
			t.Fatalf("batch %d has %d entries, more than the default BatchSize %d", i, len(b), requestlog.DefaultBatchSize)
		}
	}
}

func TestCloseGivesUpOnStuckSink(t *testing.T) {
	t.Parallel()
	sink, unplug := plugged(t)
	var logs logBuffer
	l := requestlog.New(sink, requestlog.Options{QueueSize: 100, BatchSize: 10, Logger: newTestLogger(&logs)})
	for i := range 50 {
		l.Log(entry(i))
	}
	sink.waitEntered(t) // the first batch is stuck in the sink

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := l.Close(ctx)
	if err == nil {
		t.Fatal("Close returned nil with a stuck sink")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close error %q does not wrap context.DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "50 entries") {
		t.Errorf("Close error %q does not say that 50 entries were left", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %v with a 50ms context", took)
	}

	// Once the sink comes back, the batch it held is stored and the other
	// 40 entries are counted as failed, not written.
	unplug()
	err = l.Close(context.Background())
	if err == nil || !strings.Contains(err.Error(), "40 entries") {
		t.Errorf("second Close: %v, want an error about 40 entries", err)
	}
	st := l.Stats()
	if st.Written != 10 || st.Failed != 40 || st.QueueLen != 0 {
		t.Errorf("stats %+v, want Written 10, Failed 40, QueueLen 0", st)
	}
	if len(logs.lines("close gave up")) != 1 {
		t.Errorf("want one error about the abandoned entries, log:\n%s", logs.String())
	}
}

func TestDropNewest(t *testing.T) {
	t.Parallel()
	sink, unplug := plugged(t)
	var logs logBuffer
	var bc recordingBroadcaster
	l := requestlog.New(sink, requestlog.Options{
		QueueSize: 10, BatchSize: 1, Logger: newTestLogger(&logs), Broadcaster: &bc,
	})

	// Entry 0 goes to the sink, which holds it: the queue is now empty and
	// nothing drains it.
	l.Log(entry(0))
	sink.waitEntered(t)

	start := time.Now()
	for i := 1; i <= 50; i++ {
		l.Log(entry(i))
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("50 calls to Log took %v with a stuck sink; Log must not wait", took)
	}

	want := requestlog.Stats{Queued: 11, Dropped: 40, QueueLen: 10}
	if st := l.Stats(); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	warnings := logs.lines("dropping entries")
	if len(warnings) != 1 {
		t.Fatalf("got %d drop warnings, want exactly 1 (rate-limited), log:\n%s", len(warnings), logs.String())
	}
	for _, want := range []string{"level=WARN", "dropped_total=1", "reason=\"queue full\"", "policy=drop_newest"} {
		if !strings.Contains(warnings[0], want) {
			t.Errorf("the warning %q lacks %s", warnings[0], want)
		}
	}
	if got := bc.ids(); len(got) != 11 {
		t.Errorf("the broadcaster got %d entries, want the 11 queued ones", len(got))
	}

	// The newest entries were dropped: 0..10 are written.
	unplug()
	closeOK(t, l)
	checkInOrder(t, sink.entries(), 11)
	if st := l.Stats(); st.Written != 11 || st.Dropped != 40 || st.Queued != 11 {
		t.Errorf("after Close, stats %+v, want Written 11, Dropped 40, Queued 11", st)
	}
}

func TestBlock(t *testing.T) {
	t.Parallel()

	t.Run("waits then drops", func(t *testing.T) {
		t.Parallel()
		const blockTimeout = 40 * time.Millisecond
		sink, unplug := plugged(t)
		l := requestlog.New(sink, requestlog.Options{
			QueueSize: 1, BatchSize: 1, Policy: requestlog.Block, BlockTimeout: blockTimeout,
			Logger: newTestLogger(&logBuffer{}),
		})
		l.Log(entry(0)) // held by the sink
		sink.waitEntered(t)
		l.Log(entry(1)) // fills the queue

		start := time.Now()
		l.Log(entry(2))
		waited := time.Since(start)
		if waited < blockTimeout {
			t.Errorf("Log returned after %v, before BlockTimeout (%v)", waited, blockTimeout)
		}
		if waited > 5*time.Second {
			t.Errorf("Log waited %v, far beyond BlockTimeout (%v)", waited, blockTimeout)
		}
		if st := l.Stats(); st.Dropped != 1 || st.Queued != 2 {
			t.Errorf("stats %+v, want Dropped 1 and Queued 2", st)
		}
		unplug()
		closeOK(t, l)
		checkInOrder(t, sink.entries(), 2)
	})

	t.Run("queues once there is room", func(t *testing.T) {
		t.Parallel()
		sink, unplug := plugged(t)
		l := requestlog.New(sink, requestlog.Options{
			QueueSize: 1, BatchSize: 1, Policy: requestlog.Block, BlockTimeout: time.Minute,
		})
		l.Log(entry(0)) // held by the sink
		sink.waitEntered(t)
		l.Log(entry(1)) // fills the queue

		logged := make(chan struct{})
		go func() {
			l.Log(entry(2)) // waits for room
			close(logged)
		}()
		select {
		case <-logged:
			t.Fatal("Log returned while the queue was full")
		case <-time.After(20 * time.Millisecond):
		}
		unplug()
		select {
		case <-logged:
		case <-time.After(5 * time.Second):
			t.Fatal("Log still waits after the queue drained")
		}
		closeOK(t, l)
		checkInOrder(t, sink.entries(), 3)
		if st := l.Stats(); st.Dropped != 0 || st.Written != 3 {
			t.Errorf("stats %+v, want Dropped 0 and Written 3", st)
		}
	})
}

func TestRetry(t *testing.T) {
	t.Parallel()
	const backoff, maxBackoff = 10 * time.Millisecond, 25 * time.Millisecond

	t.Run("a database away is waited for beyond Attempts", func(t *testing.T) {
		t.Parallel()
		sink := &fakeSink{failFirst: 4 * requestlog.DefaultAttempts}
		var logs logBuffer
		l := requestlog.New(sink, requestlog.Options{
			BatchSize: 3, FlushEvery: time.Hour,
			RetryBackoff: backoff, MaxRetryBackoff: maxBackoff,
			Unavailable: func(err error) bool { return errors.Is(err, errSinkDown) },
			Logger:      newTestLogger(&logs),
		})
		for i := range 3 {
			l.Log(entry(i))
		}
		closeOK(t, l)
		checkInOrder(t, sink.entries(), 3)
		if _, calls := sink.snapshot(); calls != 4*requestlog.DefaultAttempts+1 {
			t.Errorf("%d calls, want %d", calls, 4*requestlog.DefaultAttempts+1)
		}
		if st := l.Stats(); st.Failed != 0 || st.Written != 3 {
			t.Errorf("stats %+v, want Written 3 and nothing failed", st)
		}
		if len(logs.lines("does not answer")) != 1 || len(logs.lines("answers again")) != 1 {
			t.Errorf("want one warning when the database goes and one line when it is back, log:\n%s", logs.String())
		}
	})

	t.Run("succeeds after failures", func(t *testing.T) {
		t.Parallel()
		sink := &fakeSink{failFirst: 2}
		l := requestlog.New(sink, requestlog.Options{
			RetryBackoff: backoff, MaxRetryBackoff: maxBackoff, FlushEvery: time.Hour,
		})
		for i := range 3 {
			l.Log(entry(i))
		}
		closeOK(t, l)

		checkInOrder(t, sink.entries(), 3)
		batches, calls := sink.snapshot()
		if calls != 3 || len(batches) != 1 {
			t.Errorf("%d calls storing %d batches, want 3 calls storing 1", calls, len(batches))
		}
		want := requestlog.Stats{Queued: 3, Written: 3, Batches: 1}
		if st := l.Stats(); st != want {
			t.Errorf("stats %+v, want %+v", st, want)
		}
	})

	t.Run("counted failed after every attempt", func(t *testing.T) {
		t.Parallel()
		sink := &fakeSink{failFirst: requestlog.DefaultAttempts}
		var logs logBuffer
		l := requestlog.New(sink, requestlog.Options{
			BatchSize: 3, FlushEvery: time.Hour, // the 3 entries below make one batch
			RetryBackoff: backoff, MaxRetryBackoff: maxBackoff,
			Logger: newTestLogger(&logs),
		})
		for i := range 3 {
			l.Log(entry(i))
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(logs.lines("batch lost")) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the failing batch was never reported lost, stats %+v", l.Stats())
			}
			time.Sleep(time.Millisecond)
		}
		st := l.Stats()
		if st.Failed != 3 || st.Written != 0 {
			t.Errorf("stats %+v, want Failed 3, Written 0", st)
		}
		_, calls := sink.snapshot()
		if calls != requestlog.DefaultAttempts {
			t.Errorf("the sink was tried %d times, want %d", calls, requestlog.DefaultAttempts)
		}
		// Pauses: 10ms, doubled to 20ms, then capped at 25ms.
		sink.mu.Lock()
		at := append([]time.Time(nil), sink.calls...)
		sink.mu.Unlock()
		for i, want := range []time.Duration{10, 20, 25, 25} {
			want *= time.Millisecond
			if gap := at[i+1].Sub(at[i]); gap < want {
				t.Errorf("pause before try %d was %v, want at least %v", i+2, gap, want)
			}
		}
		lost := logs.lines("batch lost")
		if len(lost) != 1 || !strings.Contains(lost[0], "level=ERROR") || !strings.Contains(lost[0], "entries=3") {
			t.Errorf("want one error reporting 3 lost entries, log:\n%s", logs.String())
		}

		// The sink is back: later entries are written.
		l.Log(entry(3))
		l.Log(entry(4))
		closeOK(t, l)
		st = l.Stats()
		if st.Written != 2 || st.Failed != 3 || st.Queued != 5 {
			t.Errorf("after Close, stats %+v, want Written 2, Failed 3, Queued 5", st)
		}
	})

	t.Run("close reports failures during the drain", func(t *testing.T) {
		t.Parallel()
		sink := &fakeSink{failFirst: -1}
		l := requestlog.New(sink, requestlog.Options{
			RetryBackoff: time.Millisecond, FlushEvery: time.Hour, Logger: newTestLogger(&logBuffer{}),
		})
		for i := range 7 {
			l.Log(entry(i))
		}
		err := l.Close(context.Background())
		if err == nil || !strings.Contains(err.Error(), "7 entries could not be written") {
			t.Errorf("Close: %v, want an error about 7 entries", err)
		}
	})
}

// recordingBroadcaster keeps the ID of every published entry.
type recordingBroadcaster struct {
	mu  sync.Mutex
	got []string
}

func (b *recordingBroadcaster) Publish(e requestlog.Entry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, e.ID)
}

func (b *recordingBroadcaster) ids() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.got...)
}

func TestBroadcasterGetsEveryQueuedEntry(t *testing.T) {
	t.Parallel()
	const n = 500
	var bc recordingBroadcaster
	sink := &fakeSink{}
	l := requestlog.New(sink, requestlog.Options{Broadcaster: &bc, Logger: slog.New(slog.DiscardHandler)})
	for i := range n {
		l.Log(entry(i))
	}
	closeOK(t, l)
	got := bc.ids()
	if len(got) != n {
		t.Fatalf("the broadcaster got %d entries, want %d", len(got), n)
	}
	for i, id := range got {
		if id != strconv.Itoa(i) {
			t.Fatalf("broadcast %d has ID %q, want %d", i, id, i)
		}
	}
	l.Log(entry(n)) // dropped: not broadcast
	if len(bc.ids()) != n {
		t.Error("an entry logged after Close was broadcast")
	}
}

// bodyBroadcaster records whether a published entry carried a body.
type bodyBroadcaster struct{ sawBody atomic.Bool }

func (b *bodyBroadcaster) Publish(e requestlog.Entry) {
	if e.RequestBytes != nil || e.ResponseBytes != nil {
		b.sawBody.Store(true)
	}
}

// TestBroadcastEntriesHaveNoBodies: bodies are redacted only by the sink,
// so the broadcaster never sees them; the sink still gets them.
func TestBroadcastEntriesHaveNoBodies(t *testing.T) {
	t.Parallel()
	var bc bodyBroadcaster
	sink := &fakeSink{}
	l := requestlog.New(sink, requestlog.Options{Broadcaster: &bc, Logger: slog.New(slog.DiscardHandler)})
	l.Log(requestlog.Entry{RequestLog: store.RequestLog{ID: "1"}, RequestBytes: []byte(`{"password":"x"}`), ResponseBytes: []byte(`{}`)})
	closeOK(t, l)
	if bc.sawBody.Load() {
		t.Error("a broadcast entry carried a body")
	}
	if got := sink.entries(); len(got) != 1 || string(got[0].RequestBytes) != `{"password":"x"}` || string(got[0].ResponseBytes) != `{}` {
		t.Errorf("the sink got %+v", got)
	}
}

func TestLogAfterCloseIsDropped(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	sink := &fakeSink{}
	l := requestlog.New(sink, requestlog.Options{Logger: newTestLogger(&logs)})
	l.Log(entry(0))
	closeOK(t, l)

	l.Log(entry(1))
	l.Log(entry(2))
	want := requestlog.Stats{Queued: 1, Written: 1, Dropped: 2, Batches: 1}
	if st := l.Stats(); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	checkInOrder(t, sink.entries(), 1)
	if w := logs.lines("dropping entries"); len(w) != 1 || !strings.Contains(w[0], "reason=closed") {
		t.Errorf("want one warning with reason=closed, log:\n%s", logs.String())
	}
	closeOK(t, l) // a second Close is harmless
}

func TestConcurrentLog(t *testing.T) {
	t.Parallel()
	const goroutines, perG = 8, 2000
	const total = goroutines * perG

	// logAll starts the producers; each numbers its entries g*perG + i.
	logAll := func(l *requestlog.Logger) *sync.WaitGroup {
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for i := range perG {
					l.Log(requestlog.Entry{RequestLog: store.RequestLog{ID: strconv.Itoa(g*perG + i),
						KeyID: sql.NullString{String: strconv.Itoa(g), Valid: true}}})
				}
			})
		}
		return &wg
	}
	// checkPerProducerOrder verifies each producer's entries arrived in the
	// order it logged them.
	checkPerProducerOrder := func(t *testing.T, entries []requestlog.Entry) {
		t.Helper()
		last := make([]int, goroutines)
		for i := range last {
			last[i] = -1
		}
		for _, e := range entries {
			g, _ := strconv.Atoi(e.KeyID.String)
			n, _ := strconv.Atoi(e.ID)
			if n <= last[g] {
				t.Fatalf("producer %d: entry %d after %d", g, n, last[g])
			}
			last[g] = n
		}
	}

	tests := []struct {
		name        string
		opts        requestlog.Options
		delay       time.Duration
		closeEarly  bool // Close while the producers are still logging
		wantNoDrops bool
	}{
		{name: "large queue", opts: requestlog.Options{QueueSize: total}, wantNoDrops: true},
		{name: "small queue with slow sink", opts: requestlog.Options{QueueSize: 64, BatchSize: 16}, delay: 100 * time.Microsecond},
		{name: "block policy", opts: requestlog.Options{QueueSize: 64, BatchSize: 16, Policy: requestlog.Block, BlockTimeout: time.Millisecond}, delay: 100 * time.Microsecond},
		{name: "close while logging", opts: requestlog.Options{QueueSize: 256}, closeEarly: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sink := &fakeSink{delay: tt.delay}
			var bc atomic.Int64
			tt.opts.Broadcaster = countingBroadcaster{&bc}
			tt.opts.Logger = newTestLogger(&logBuffer{})
			l := requestlog.New(sink, tt.opts)

			wg := logAll(l)
			if tt.closeEarly {
				time.Sleep(time.Millisecond)
				closeOK(t, l)
				wg.Wait()
			} else {
				wg.Wait()
				closeOK(t, l)
			}

			st := l.Stats()
			t.Logf("stats %+v", st)
			if st.Written+st.Dropped != total {
				t.Errorf("Written %d + Dropped %d = %d, want %d", st.Written, st.Dropped, st.Written+st.Dropped, total)
			}
			if st.Queued != st.Written || st.Failed != 0 || st.QueueLen != 0 {
				t.Errorf("stats %+v: every queued entry should be written", st)
			}
			if tt.wantNoDrops && st.Dropped != 0 {
				t.Errorf("%d entries dropped with a queue as large as the load", st.Dropped)
			}
			if bc.Load() != st.Queued {
				t.Errorf("broadcast %d entries, queued %d", bc.Load(), st.Queued)
			}
			entries := sink.entries()
			if int64(len(entries)) != st.Written {
				t.Errorf("the sink holds %d entries, Written says %d", len(entries), st.Written)
			}
			checkPerProducerOrder(t, entries)
		})
	}
}

type countingBroadcaster struct{ n *atomic.Int64 }

func (b countingBroadcaster) Publish(requestlog.Entry) { b.n.Add(1) }

func TestOverflowPolicyString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		policy requestlog.OverflowPolicy
		want   string
	}{
		{name: "zero value is drop newest", policy: requestlog.OverflowPolicy(0), want: "drop_newest"},
		{name: "block", policy: requestlog.Block, want: "block"},
		{name: "unknown", policy: requestlog.OverflowPolicy(7), want: "OverflowPolicy(7)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.policy.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

// discardSink stores nothing, as fast as it can.
type discardSink struct{}

func (discardSink) WriteBatch(context.Context, []requestlog.Entry) error { return nil }

// stuckSink never returns until ctx is cancelled.
type stuckSink struct{}

func (stuckSink) WriteBatch(ctx context.Context, _ []requestlog.Entry) error {
	<-ctx.Done()
	return ctx.Err()
}

// BenchmarkLog measures what Log costs the request path, called from every
// processor at once (b.RunParallel). dropped/op is the share of calls that
// found the queue full.
//
//   - fast_sink: a sink that stores nothing. Producers that do nothing but
//     log outrun the single writer, so most calls take the drop path.
//   - queue_full: the sink is stuck, every call is dropped: the cost of
//     the drop path alone.
//   - paced: each producer sleeps between calls, as a request waits on its
//     upstream, leaving the writer the CPU it needs to keep up, so (nearly)
//     every entry is queued. log-ns/op is the time inside Log alone,
//     measured with time.Now around the call (which adds a few tens of ns).
func BenchmarkLog(b *testing.B) {
	e := requestlog.Entry{RequestLog: store.RequestLog{
		ID: "req_0123456789abcdef", TS: time.Now().UnixMilli(), KeyID: sql.NullString{String: "key_0123", Valid: true},
		Model: "gpt-4o-mini", Provider: "openai", Plugin: "openai", PluginVersion: "1.0.0", Status: 200,
		LatencyMS: 412, TTFBMS: 95, Stream: true, PromptTokens: 12, CompletionTokens: 40, CostUSD: 0.00012,
	}}
	run := func(b *testing.B, sink requestlog.Sink, work func()) {
		l := requestlog.New(sink, requestlog.Options{Logger: slog.New(slog.DiscardHandler)})
		var inLog atomic.Int64 // nanoseconds spent inside Log, summed over producers
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var spent time.Duration
			for pb.Next() {
				if work == nil {
					l.Log(e)
					continue
				}
				work()
				start := time.Now()
				l.Log(e)
				spent += time.Since(start)
			}
			inLog.Add(int64(spent))
		})
		b.StopTimer()
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		_ = l.Close(ctx) // a stuck sink makes Close give up; nothing to check here
		st := l.Stats()
		b.ReportMetric(float64(st.Dropped)/float64(b.N), "dropped/op")
		if work != nil {
			b.ReportMetric(float64(inLog.Load())/float64(b.N), "log-ns/op")
		}
	}
	b.Run("fast_sink", func(b *testing.B) { run(b, discardSink{}, nil) })
	b.Run("queue_full", func(b *testing.B) { run(b, stuckSink{}, nil) })
	b.Run("paced", func(b *testing.B) {
		run(b, discardSink{}, func() { time.Sleep(time.Microsecond) })
	})
}
