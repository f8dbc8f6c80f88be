package plugin_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/egress"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

const hostile = "host/internal/testplugins/hostile"

// slowResult is what one "slow" stream of the hostile plugin delivered: 20
// chunks naming its instance, 50 ms apart.
type slowResult struct {
	instance int64
	chunks   int
	err      error
}

func (r *recorder) slow(t testing.TB) slowResult {
	t.Helper()
	err := r.wait(t)
	res := slowResult{instance: -1, err: err}
	for _, e := range r.snapshot() {
		if e.Kind != "chunk" {
			continue
		}
		var c struct{ Instance int64 }
		if json.Unmarshal(e.Data, &c) != nil {
			t.Fatalf("chunk %s", e.Data)
		}
		res.instance = c.Instance
		res.chunks++
	}
	return res
}

// TestManyStreamsFewInstances: a thousand concurrent streams, each a
// second long, are held by at most one instance per core, and every one
// completes.
func TestManyStreamsFewInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("a thousand streams")
	}
	v := load(t, hostile, plugin.Limits{})
	const n = 1000
	recs := make([]*recorder, n)
	for i := range recs {
		_, recs[i] = open(t, v, abi.OpChatStream, "slow")
	}
	peak := v.Stats()
	for i, r := range recs {
		res := r.slow(t)
		if res.err != nil || res.chunks != 20 {
			t.Fatalf("stream %d: %d chunks, end %v", i, res.chunks, res.err)
		}
	}
	st := v.Stats()
	if st.Instances > runtime.GOMAXPROCS(0) || st.Failures != 0 || st.StreamsTotal != n {
		t.Fatalf("after %d streams: %+v", n, st)
	}
	t.Logf("%d streams on %d instance(s) (%d open when the last one started), %d callbacks", n, st.Created, peak.Streams, st.Callbacks)
}

// instanceGroups opens n slow streams spread over the version's instances
// and returns them.
func openSlow(t *testing.T, v *plugin.Version, n int) []*recorder {
	recs := make([]*recorder, n)
	for i := range recs {
		_, recs[i] = open(t, v, abi.OpChatStream, "slow")
	}
	return recs
}

// TestInstanceFailures: a callback that loops, sleeps, blows the memory cap
// or exits kills its instance. Exactly the streams that instance held end
// with ErrTrap (the misbehaving one and the bystanders placed next to it);
// the streams of the other instance finish all their chunks, and the next
// stream gets a fresh instance.
func TestInstanceFailures(t *testing.T) {
	for _, mode := range []string{"loop", "sleep", "membomb", "exit"} {
		t.Run(mode, func(t *testing.T) {
			v := load(t, hostile, plugin.Limits{MinInstances: 2, MemoryPages: 256, RecycleAfterPages: 256})
			bystanders := openSlow(t, v, 4)
			time.Sleep(120 * time.Millisecond) // every bystander has sent a chunk: its instance is known
			if st := v.Stats(); st.Instances != 2 || st.PerInstance[0].Streams != 2 || st.PerInstance[1].Streams != 2 {
				t.Fatalf("bystanders not spread over two instances: %+v", st)
			}
			_, bad := open(t, v, abi.OpChat, mode)
			if err := bad.wait(t); !errors.Is(err, plugin.ErrTrap) {
				t.Fatalf("%s ended with %v, want ErrTrap", mode, err)
			}
			byInstance := map[int64][]slowResult{}
			for _, r := range bystanders {
				res := r.slow(t)
				byInstance[res.instance] = append(byInstance[res.instance], res)
			}
			failed, finished := 0, 0
			for id, group := range byInstance {
				if len(group) != 2 {
					t.Fatalf("instance %d held %d bystanders, want 2", id, len(group))
				}
				for _, r := range group {
					switch {
					case errors.Is(r.err, plugin.ErrTrap) && r.chunks < 20:
						failed++
					case r.err == nil && r.chunks == 20:
						finished++
					default:
						t.Fatalf("bystander on instance %d: %d chunks, end %v", id, r.chunks, r.err)
					}
				}
				if group[0].err != nil != (group[1].err != nil) {
					t.Fatalf("the two bystanders of instance %d ended differently: %v, %v", id, group[0].err, group[1].err)
				}
			}
			if failed != 2 || finished != 2 {
				t.Fatalf("%d bystanders failed and %d finished, want the 2 of the failed instance and the 2 of the other", failed, finished)
			}
			okChat(t, v)
			if st := v.Stats(); st.Failures != 1 {
				t.Fatalf("%+v", st)
			}
		})
	}
}

// TestStreamFailures: misbehaviour that the SDK or the host can pin on one
// stream costs that stream alone: the other streams of the same instance
// finish, and the instance keeps serving.
func TestStreamFailures(t *testing.T) {
	cases := []struct {
		mode   string
		op     abi.Op
		check  func(err error) bool
		expect string
	}{
		{"panic", abi.OpChat, failed(502, "plugin panic: assignment to entry in nil map"), "a 502 naming the panic"},
		{"panic", abi.OpChatStream, failed(502, "plugin panic"), "a 502 naming the panic"},
		{"flood", abi.OpChatStream, is(plugin.ErrOutputLimit), "ErrOutputLimit"},
		{"bigout", abi.OpChatStream, is(plugin.ErrOutputLimit), "ErrOutputLimit"},
		{"badhost", abi.OpChat, failed(502, "http_send: destination denied"), "a 502: destination denied"},
		{"silent", abi.OpChat, is(plugin.ErrNoResponse), "ErrNoResponse"},
	}
	for _, tc := range cases {
		t.Run(tc.mode+"/"+tc.op.String(), func(t *testing.T) {
			v := load(t, hostile, plugin.Limits{MaxEmitBytes: 8 << 20, MaxInstances: 1, CallbackTimeout: 5 * time.Second})
			bystanders := openSlow(t, v, 3)
			eg, err := egress.New(egress.Options{BaseURL: "https://api.example.com"})
			if err != nil {
				t.Fatal(err)
			}
			rec := newRecorder()
			if _, err := v.Open(plugin.Invocation{Op: tc.op, Request: []byte(`{"model":"` + tc.mode + `"}`),
				Config: guestConfig("https://api.example.com"), Egress: eg, Sink: countingSink{rec}}); err != nil {
				t.Fatal(err)
			}
			if err := rec.wait(t); !tc.check(err) {
				t.Fatalf("ended with %v (%v), want %s", err, rec.snapshot(), tc.expect)
			}
			for i, r := range bystanders {
				if res := r.slow(t); res.err != nil || res.chunks != 20 {
					t.Fatalf("bystander %d: %d chunks, end %v", i, res.chunks, res.err)
				}
			}
			if st := v.Stats(); st.Failures != 0 || st.Created != 1 || st.Instances != 1 {
				t.Fatalf("the instance did not survive: %+v", st)
			}
			okChat(t, v)
		})
	}
}

func is(target error) func(error) bool { return func(err error) bool { return errors.Is(err, target) } }

func failed(status int, msg string) func(error) bool {
	return func(err error) bool {
		var f *plugin.Failure
		return errors.As(err, &f) && f.Status == status && strings.Contains(string(f.Body), msg)
	}
}

// countingSink keeps no chunk data, so floods cost the test no memory.
type countingSink struct{ *recorder }

func (c countingSink) Chunk([]byte) bool { return true }

// TestSleepCannotOutlastItsCallback: a guest's time.Sleep is not a real
// sleep; it cannot hold its instance past the callback deadline.
func TestSleepCannotOutlastItsCallback(t *testing.T) {
	v := load(t, hostile, plugin.Limits{CallbackTimeout: 300 * time.Millisecond})
	start := time.Now()
	if err := run(t, v, abi.OpChat, "sleep").wait(t); !errors.Is(err, plugin.ErrTrap) {
		t.Fatalf("%v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the sleeping callback held its instance for %s", d)
	}
}

// TestLargeInputExtendsTheDeadline: a callback's deadline grows with the
// input it is handed, so a large but valid request may take longer to read
// than a small one without costing its instance.
func TestLargeInputExtendsTheDeadline(t *testing.T) {
	v := load(t, hostile, plugin.Limits{CallbackTimeout: 100 * time.Millisecond})
	// 1.5 s of work on a small request: past the 100 ms deadline (of CPU
	// time, which a busy machine could stretch, though not tenfold).
	if err := run(t, v, abi.OpChat, "busy-long").wait(t); !errors.Is(err, plugin.ErrTrap) {
		t.Fatalf("small request: %v", err)
	}
	// The same work on an 8 MiB request, whose deadline is 100 ms + 8 ×
	// DeadlinePerMiB (900 ms).
	pad := strings.Repeat("x", 8<<20)
	rec := newRecorder()
	if _, err := v.Open(plugin.Invocation{Op: abi.OpChat, Request: []byte(`{"model":"busy","pad":"` + pad + `"}`),
		Config: guestConfig("http://127.0.0.1:1"), Sink: rec}); err != nil {
		t.Fatal(err)
	}
	if err := rec.wait(t); err != nil {
		t.Fatalf("large request: %v", err)
	}
	if e := rec.snapshot(); len(e) != 1 || e[0].Kind != "body" {
		t.Fatalf("emits %v", e)
	}
}

// TestStarvedCallbackKeepsItsTime: the callback deadline counts the CPU
// time a callback used, not the time it waited for a core. On a machine
// saturated by other goroutines (thousands of connections opening at
// once), a callback needing a fifth of its deadline takes several times
// that deadline in wall time; cutting it would fail every stream on its
// instance.
func TestStarvedCallbackKeepsItsTime(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("per-thread CPU clocks are read on Linux only")
	}
	v := load(t, hostile, plugin.Limits{CallbackTimeout: 100 * time.Millisecond})
	okChat(t, v) // the instance is up
	// Spinners outnumbering the cores sixteen to one: the worker gets
	// about a seventeenth of a core.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 16*runtime.GOMAXPROCS(0); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for x := 0; ; x++ {
				if x%1024 == 0 {
					select {
					case <-stop:
						return
					default:
					}
				}
			}
		}()
	}
	start := time.Now()
	rec := run(t, v, abi.OpChat, "work")
	err := rec.wait(t)
	wall := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("a starved callback was cut after %s: %v", wall, err)
	}
	t.Logf("20 ms of work took %s of wall time", wall)
	if st := v.Stats(); st.Failures != 0 || st.Created != 1 {
		t.Fatalf("%+v", st)
	}
	// A spinning guest is still stopped at its deadline.
	if err := run(t, v, abi.OpChat, "loop").wait(t); !errors.Is(err, plugin.ErrTrap) {
		t.Fatalf("spinning guest: %v", err)
	}
}

// TestRequestTimeout: a stream that outlives request_timeout ends with
// ErrTimeout; its instance is unharmed.
func TestRequestTimeout(t *testing.T) {
	v := load(t, hostile, plugin.Limits{RequestTimeout: 300 * time.Millisecond})
	res := run(t, v, abi.OpChatStream, "slow").slow(t)
	if !errors.Is(res.err, plugin.ErrTimeout) || res.chunks == 0 || res.chunks == 20 {
		t.Fatalf("%d chunks, end %v", res.chunks, res.err)
	}
	okChat(t, v)
	waitFor(t, func() bool { return v.Stats().Streams == 0 })
	if st := v.Stats(); st.Failures != 0 {
		t.Fatalf("%+v", st)
	}
}

// TestCancel: a client that goes away ends its stream at once; the guest
// forgets it (on_done) and the instance holds nothing.
func TestCancel(t *testing.T) {
	v := load(t, hostile, plugin.Limits{})
	st, rec := open(t, v, abi.OpChatStream, "slow")
	time.Sleep(120 * time.Millisecond)
	st.Cancel()
	if err := rec.wait(t); !errors.Is(err, plugin.ErrClientGone) {
		t.Fatalf("%v", err)
	}
	waitFor(t, func() bool { return v.Stats().Streams == 0 })
	st.Cancel() // a second cancel is harmless
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRetireFinishesStreamsOnTheOldVersion: a retired version takes no new
// stream, finishes the ones it holds, and closes after the last.
func TestRetireFinishesStreamsOnTheOldVersion(t *testing.T) {
	v := load(t, hostile, plugin.Limits{})
	recs := openSlow(t, v, 10)
	time.Sleep(60 * time.Millisecond)
	v.Retire()
	if v.Closed() {
		t.Fatal("closed while streams were open")
	}
	if _, err := v.Open(plugin.Invocation{Op: abi.OpChat, Request: []byte(`{}`), Sink: newRecorder()}); !errors.Is(err, plugin.ErrRetired) {
		t.Fatalf("new stream on a retired version: %v", err)
	}
	for i, r := range recs {
		if res := r.slow(t); res.err != nil || res.chunks != 20 {
			t.Fatalf("stream %d: %d chunks, end %v", i, res.chunks, res.err)
		}
	}
	waitFor(t, v.Closed)
}

// TestScaleToZero: an instance with no stream for idle_timeout is closed;
// the next stream starts one again (a cold start).
func TestScaleToZero(t *testing.T) {
	defer plugin.SetTick(20 * time.Millisecond)()
	v := load(t, hostile, plugin.Limits{IdleTimeout: 100 * time.Millisecond})
	if st := v.Stats(); st.Instances != 1 {
		t.Fatalf("after load: %+v", st)
	}
	waitFor(t, func() bool { return v.Stats().Instances == 0 })
	start := time.Now()
	okChat(t, v)
	t.Logf("cold start and one call: %s", time.Since(start))
	if st := v.Stats(); st.Created != 2 || st.Failures != 0 {
		t.Fatalf("%+v", st)
	}
	waitFor(t, func() bool { return v.Stats().Instances == 0 })
}

// TestMinInstancesStayWarm: min_instances survive idleness.
func TestMinInstancesStayWarm(t *testing.T) {
	defer plugin.SetTick(20 * time.Millisecond)()
	v := load(t, hostile, plugin.Limits{IdleTimeout: 50 * time.Millisecond, MinInstances: 1})
	openSlow(t, v, 2) // the second may start a second instance
	time.Sleep(1500 * time.Millisecond)
	if st := v.Stats(); st.Instances != 1 {
		t.Fatalf("want one warm instance left: %+v", st)
	}
}

// TestRecycle: an instance that ran recycle_after_calls callbacks takes no
// new stream, finishes its own and closes; nothing fails.
func TestRecycle(t *testing.T) {
	v := load(t, hostile, plugin.Limits{RecycleAfterCalls: 5})
	for i := 0; i < 6; i++ {
		okChat(t, v) // two callbacks each: start and done
	}
	waitFor(t, func() bool { st := v.Stats(); return st.Discarded >= 1 })
	if st := v.Stats(); st.Failures != 0 || st.Created < 2 {
		t.Fatalf("%+v", st)
	}
}

// sseUpstream serves n SSE events as fast as they are read and counts the
// events written.
func sseUpstream(t *testing.T, n int) (*httptest.Server, *atomic.Int64) {
	var written atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		f := w.(http.Flusher)
		for i := 0; i < n; i++ {
			fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":%q}}]}\n\n", strings.Repeat("x", 200))
			f.Flush()
			written.Add(1)
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return srv, &written
}

// TestBackpressure: while StreamBufferBytes wait for the client, the host
// reads nothing more of the stream's upstream; once the client catches up,
// the stream goes on to its end.
func TestBackpressure(t *testing.T) {
	v := load(t, "plugins/openai", plugin.Limits{})
	srv, _ := sseUpstream(t, 100)
	eg, err := egress.New(egress.Options{BaseURL: srv.URL, AllowPrivateNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	rec.backlog = 1 << 20 // a client that reads nothing
	if _, err := v.Open(plugin.Invocation{Op: abi.OpChatStream, Request: []byte(`{"model":"m","stream":true}`),
		Config: guestConfig(srv.URL), Egress: eg, Sink: rec}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got := len(rec.snapshot()); got != 0 {
		t.Fatalf("%d events relayed to a client that reads nothing", got)
	}
	rec.setBacklog(0)
	if err := rec.wait(t); err != nil {
		t.Fatal(err)
	}
	if got := len(rec.snapshot()); got != 100 {
		t.Fatalf("%d chunks, want 100", got)
	}
}

// TestRelayCallsNoGuestPerEvent: a relayed stream costs the guest four
// callbacks (start, head, end, done), whatever its length.
func TestRelayCallsNoGuestPerEvent(t *testing.T) {
	v := load(t, "plugins/openai", plugin.Limits{})
	srv, _ := sseUpstream(t, 200)
	eg, err := egress.New(egress.Options{BaseURL: srv.URL, AllowPrivateNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	before := v.Stats().Callbacks
	rec := newRecorder()
	if _, err := v.Open(plugin.Invocation{Op: abi.OpChatStream, Request: []byte(`{"model":"m","stream":true}`),
		Config: guestConfig(srv.URL), Egress: eg, Sink: rec}); err != nil {
		t.Fatal(err)
	}
	if err := rec.wait(t); err != nil || len(rec.snapshot()) != 200 {
		t.Fatalf("%v, %d chunks", err, len(rec.snapshot()))
	}
	waitFor(t, func() bool { return v.Stats().Streams == 0 })
	if n := v.Stats().Callbacks - before; n != 4 {
		t.Fatalf("%d callbacks for a relayed stream of 200 events, want 4", n)
	}
}

// TestConcurrentOpens hammers one version from many goroutines.
func TestConcurrentOpens(t *testing.T) {
	v := load(t, hostile, plugin.Limits{})
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				rec := run(t, v, abi.OpChat, "ok")
				if e := rec.snapshot(); len(e) != 1 || !bytes.Contains(e[0].Data, []byte("fine")) {
					t.Errorf("emits %v", e)
					return
				}
			}
		}()
	}
	wg.Wait()
	if st := v.Stats(); st.Failures != 0 || st.StreamsTotal != 400 {
		t.Fatalf("%+v", st)
	}
}
