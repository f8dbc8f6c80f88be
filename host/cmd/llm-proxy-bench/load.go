package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// target is one way of reaching the fake upstream's chat completions
// endpoint: directly, through the bare proxy, or through llm-proxy.
type target struct {
	title  string // column heading
	url    string // full chat completions URL
	proc   *child // the process whose CPU and memory the figures describe
	client *http.Client
	apiKey string // sent as a bearer token
	model  string // the request's model; empty means benchModel
}

// benchModel is the model of every request unless a target names another.
const benchModel = "gpt-4o-mini"

// body is the chat completion request this target sends.
func (t *target) body(stream bool) []byte {
	if t.model != "" {
		return chatBody(t.model, stream)
	}
	return chatBody(benchModel, stream)
}

func newClient() *http.Client {
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 512,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// promptText is the user message of every request. The fake upstream echoes
// it back, cut into the configured number of stream chunks, so it is long
// enough for each of the 20 chunks to carry a few characters.
const promptText = "Summarise in about twenty short words why an LLM gateway might run its provider adapters as sandboxed WebAssembly plugins."

// chatBody returns a chat completion request. Streams ask for the usage
// chunk themselves so that every path makes the upstream do the same work
// (llm-proxy would otherwise add include_usage on the client's behalf).
func chatBody(model string, stream bool) []byte {
	s := `{"model":"` + model + `","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"` + promptText + `"}],"max_tokens":64`
	if stream {
		s += `,"stream":true,"stream_options":{"include_usage":true}`
	}
	return []byte(s + "}")
}

// outcome is what one request measured.
type outcome struct {
	total  time.Duration // request sent until the body was fully read
	ttfb   time.Duration // request sent until the first body byte (streams)
	events int           // SSE events received (streams)
}

var doneTail = []byte("data: [DONE]\n\n")

// do sends one request and reads the whole answer, checking that it looks
// complete: a chat.completion object, or an event stream ending in [DONE].
func (t *target) do(ctx context.Context, body []byte, stream bool) (outcome, error) {
	var o outcome
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return o, err
	}
	req.Header.Set("Content-Type", "application/json")
	if t.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+t.apiKey)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return o, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return o, fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	if !stream {
		b, err := io.ReadAll(resp.Body)
		o.total = time.Since(start)
		if err != nil {
			return o, err
		}
		if !bytes.Contains(b, []byte(`"chat.completion"`)) {
			return o, fmt.Errorf("unexpected body: %.200s", b)
		}
		return o, nil
	}
	var buf [8 << 10]byte
	var tail []byte
	prevNL := false
	for {
		n, rerr := resp.Body.Read(buf[:])
		if n > 0 {
			if o.ttfb == 0 {
				o.ttfb = time.Since(start)
			}
			// An event ends with a blank line: count "\n\n" pairs, also
			// across read boundaries.
			for _, c := range buf[:n] {
				if c == '\n' {
					if prevNL {
						o.events++
						prevNL = false
						continue
					}
					prevNL = true
				} else {
					prevNL = false
				}
			}
			tail = append(tail, buf[:n]...)
			if len(tail) > 64 {
				tail = tail[len(tail)-64:]
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return o, rerr
		}
	}
	o.total = time.Since(start)
	if !bytes.HasSuffix(tail, doneTail) {
		return o, fmt.Errorf("stream did not end with [DONE]: ...%q", tail)
	}
	return o, nil
}

// loadResult summarises one load run against one target.
type loadResult struct {
	n, errs  int
	firstErr error
	wall     time.Duration
	total    []time.Duration // sorted
	ttfb     []time.Duration // sorted, streams only
	events   int             // events of one stream
	cpu      map[int]uint64  // CPU ticks used per watched pid
}

// perReqMicros is the CPU time of pid per successful request, in µs.
func (r *loadResult) perReqMicros(pid int) float64 {
	ok := r.n - r.errs
	if ok <= 0 {
		return math.NaN()
	}
	return ticksToMicros(r.cpu[pid]) / float64(ok)
}

// rate is successful requests per second of wall time.
func (r *loadResult) rate() float64 {
	if r.wall <= 0 {
		return math.NaN()
	}
	return float64(r.n-r.errs) / r.wall.Seconds()
}

// runLoad sends requests with conc workers until at least n have been sent
// and at least minDur has passed, and reads the CPU time of the watched
// processes before and after. The duration floor keeps the CPU figures
// precise on fast machines: /proc counts CPU time in 10 ms ticks, so a run
// needs a few seconds of work to be accurate to about one percent.
func runLoad(ctx context.Context, t *target, n int, minDur time.Duration, conc int, stream bool, watch []int) (*loadResult, error) {
	body := t.body(stream)
	before := map[int]uint64{}
	for _, pid := range watch {
		v, err := cpuTicks(pid)
		if err != nil {
			return nil, err
		}
		before[pid] = v
	}
	var next atomic.Int64
	var mu sync.Mutex
	res := &loadResult{cpu: map[int]uint64{}}
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var totals, ttfbs []time.Duration
			var sent, errs, events int
			var firstErr error
			for ctx.Err() == nil {
				if next.Add(1) > int64(n) && time.Since(start) >= minDur {
					break
				}
				sent++
				o, err := t.do(ctx, body, stream)
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				totals = append(totals, o.total)
				if stream {
					ttfbs = append(ttfbs, o.ttfb)
					events = o.events
				}
			}
			mu.Lock()
			res.total = append(res.total, totals...)
			res.ttfb = append(res.ttfb, ttfbs...)
			res.n += sent
			res.errs += errs
			if res.firstErr == nil {
				res.firstErr = firstErr
			}
			if events != 0 {
				res.events = events
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.wall = time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Let the last responses' bookkeeping (logging, returning instances to
	// the pool) finish before reading the counters.
	time.Sleep(20 * time.Millisecond)
	for _, pid := range watch {
		v, err := cpuTicks(pid)
		if err != nil {
			return nil, err
		}
		res.cpu[pid] = v - before[pid]
	}
	sortDurations(res.total)
	sortDurations(res.ttfb)
	if res.errs == res.n {
		return res, fmt.Errorf("%s: every request failed, first error: %w", t.title, res.firstErr)
	}
	return res, nil
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted values, or -1 when there are none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return -1
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// openStreamsResult is what holding many streams open at once measured.
type openStreamsResult struct {
	opened   int           // streams that received their first chunk
	allFirst time.Duration // time until the last of them did
	rssNow   uint64        // KiB, right when all were open
	rssPeak  uint64        // KiB, highest sample while they stayed open
}

// holdStreams opens n streams of the slow model at once, waits until every
// one has received its first chunk, samples the RSS of pid for hold, then
// drops all the connections.
func holdStreams(ctx context.Context, t *target, n int, pid int, hold time.Duration) (openStreamsResult, error) {
	var r openStreamsResult
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	body := chatBody("slow-stream", true)
	first := make(chan struct{}, n)
	failed := make(chan error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequestWithContext(sctx, http.MethodPost, t.url, bytes.NewReader(body))
			if err != nil {
				failed <- err
				return
			}
			req.Header.Set("Content-Type", "application/json")
			if t.apiKey != "" {
				req.Header.Set("Authorization", "Bearer "+t.apiKey)
			}
			resp, err := t.client.Do(req)
			if err != nil {
				failed <- err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failed <- fmt.Errorf("status %d", resp.StatusCode)
				return
			}
			var buf [4 << 10]byte
			signalled := false
			for {
				m, err := resp.Body.Read(buf[:])
				if m > 0 && !signalled {
					signalled = true
					first <- struct{}{}
				}
				if err != nil {
					if !signalled {
						failed <- err
					}
					return
				}
			}
		}()
	}
	timeout := time.After(30 * time.Second)
	for r.opened < n {
		select {
		case <-first:
			r.opened++
		case err := <-failed:
			cancel()
			wg.Wait()
			return r, fmt.Errorf("%s: a slow stream failed: %w", t.title, err)
		case <-timeout:
			cancel()
			wg.Wait()
			return r, fmt.Errorf("%s: only %d of %d streams started within 30s", t.title, r.opened, n)
		case <-ctx.Done():
			return r, ctx.Err()
		}
	}
	r.allFirst = time.Since(start)
	var err error
	if r.rssNow, err = rssKiB(pid); err != nil {
		return r, err
	}
	r.rssPeak = r.rssNow
	deadline := time.Now().Add(hold)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if v, err := rssKiB(pid); err == nil && v > r.rssPeak {
			r.rssPeak = v
		}
	}
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	return r, nil
}

// errNotReady is returned by waitReady when the deadline passes.
var errNotReady = errors.New("not ready")

// waitReady polls url until it answers 200, the child dies or timeout ends.
func waitReady(ctx context.Context, url string, c *child, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if c.exited() {
			return fmt.Errorf("%s exited before becoming ready\n%s", c.name, c.describe())
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("status %d: %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%w: %s did not answer 200 on %s within %s (last: %s)\n%s", errNotReady, c.name, url, timeout, last, c.describe())
}
