package app_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
)

// TestLoadEveryRequestLogged: 2,000 requests, half of them streamed, from
// 32 concurrent clients through the official SDK, become exactly 2,000
// request log rows whose token counts add up to what the upstream
// reported. The full count runs under -race too: about 25 s on two shared
// cores, so raceEnabled does not lower it.
func TestLoadEveryRequestLogged(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 requests")
	}
	const total, concurrency = 2000, 32
	start := time.Now()
	p := startProxyWith(t, nil, fakeupstream.Options{DisableRecording: true})
	// One connection per client, kept alive.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
	t.Cleanup(hc.CloseIdleConnections)
	c := openai.NewClient(option.WithBaseURL(p.URL+"/v1/"), option.WithAPIKey(adminKey),
		option.WithHTTPClient(hc), option.WithMaxRetries(0), option.WithRequestTimeout(30*time.Second))
	ctx := context.Background()

	jobs := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	fail := func(i int, err error) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, strconv.Itoa(i)+": "+err.Error())
	}
	for range concurrency {
		wg.Go(func() {
			for i := range jobs {
				// Prompts of 2 to 12 words, so that the sums say something.
				params := chatParams("gpt-4o-mini", "load "+strconv.Itoa(i)+strings.Repeat(" word", i%11))
				if i%2 == 0 {
					if _, err := c.Chat.Completions.New(ctx, params); err != nil {
						fail(i, err)
					}
					continue
				}
				s := c.Chat.Completions.NewStreaming(ctx, params)
				n := 0
				for s.Next() {
					n++
				}
				if err := s.Err(); err != nil {
					fail(i, err)
				} else if n == 0 {
					fail(i, errNoChunks)
				}
			}
		})
	}
	for i := range total {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d requests failed, first: %s", len(failures), failures[0])
	}
	sent := time.Since(start)

	var rows struct {
		N, Streams, OK     int
		Prompt, Completion int64
	}
	waitFor(t, func() bool {
		err := p.App.Store().Reader().Get(&rows.N, `SELECT count(*) FROM request_logs`)
		if err != nil {
			t.Fatal(err)
		}
		return rows.N >= total
	})
	err := p.App.Store().Reader().QueryRow(`SELECT count(*), coalesce(sum(stream), 0), coalesce(sum(CASE WHEN status = 200 THEN 1 ELSE 0 END), 0),
		coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) FROM request_logs`).
		Scan(&rows.N, &rows.Streams, &rows.OK, &rows.Prompt, &rows.Completion)
	if err != nil {
		t.Fatal(err)
	}
	prompt, completion := p.Upstream.Usage()
	if rows.N != total || rows.Streams != total/2 || rows.OK != total {
		t.Fatalf("%d rows, %d streamed, %d with status 200; want %d, %d, %d", rows.N, rows.Streams, rows.OK, total, total/2, total)
	}
	if rows.Prompt != prompt || rows.Completion != completion || prompt == 0 {
		t.Fatalf("rows add up to %d prompt and %d completion tokens, the upstream reported %d and %d",
			rows.Prompt, rows.Completion, prompt, completion)
	}
	if status, b := adminCall(t, p, "GET", "/api/stats", ""); status != 200 ||
		!strings.Contains(string(b), `"dropped":0`) || !strings.Contains(string(b), `"failed":0`) {
		t.Fatalf("stats: %d %s", status, b)
	}
	t.Logf("%d requests in %v, all logged %v after the start", total, sent.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

var errNoChunks = errors.New("the stream had no chunks")
