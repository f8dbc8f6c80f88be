package metrics_test

import (
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/metrics"
)

// A nil *Metrics counts nothing and does not panic: the server calls it
// unconditionally.
func TestNilMetrics(t *testing.T) {
	var m *metrics.Metrics
	m.Observe(metrics.Request{Provider: "p", Model: "m", Operation: "chat", Status: 200})
	m.Attempt("p", "m", true)
	m.Refused("rpm")
	m.StreamOpened()
	m.StreamClosed()
}

func TestStatusClass(t *testing.T) {
	for status, want := range map[int]string{200: "2xx", 299: "2xx", 404: "4xx", 499: "4xx", 502: "5xx", 100: "1xx", 0: "0", 600: "600"} {
		if got := metrics.StatusClass(status); got != want {
			t.Errorf("StatusClass(%d) = %q, want %q", status, got, want)
		}
	}
}

// TestPerKeySwitch: series per key exist only when asked for.
func TestPerKeySwitch(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		m := metrics.New(metrics.Options{PerKey: perKey})
		m.Observe(metrics.Request{KeyID: "key_1", Provider: "p", Model: "m", Operation: "chat", Status: 200, Prompt: 3, Output: 4})
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body, _ := io.ReadAll(rec.Body)
		if got := strings.Contains(string(body), `llmproxy_key_requests_total{key_id="key_1",status_class="2xx"} 1`); got != perKey {
			t.Errorf("per_key %v: key series present: %v\n%s", perKey, got, body)
		}
		if !strings.Contains(string(body), `llmproxy_tokens_total{model="m",provider="p",type="completion"} 4`) {
			t.Errorf("no token series:\n%s", body)
		}
	}
}

// BenchmarkObserve is what the metrics add to one request: the finished
// request (counts, two histograms, tokens, cost) and one attempt.
func BenchmarkObserve(b *testing.B) {
	m := metrics.New(metrics.Options{})
	models := []string{"gpt-4o-mini", "gpt-4o", "claude-sonnet", "gemini-flash"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			model := models[i%len(models)]
			i++
			m.Attempt("openai", model, true)
			m.Observe(metrics.Request{Provider: "openai", Model: model, Operation: "chat", Status: 200,
				Duration: 420 * time.Millisecond, TTFB: 180 * time.Millisecond, Prompt: 120, Output: 48, CostUSD: 0.0001})
		}
	})
}

// TestObserveConcurrent counts exactly under concurrent use (and gives the
// race detector something to look at).
func TestObserveConcurrent(t *testing.T) {
	m := metrics.New(metrics.Options{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				m.Observe(metrics.Request{Provider: "p", Model: "m", Operation: "chat", Status: []int{200, 429, 502}[(g+i)%3], Prompt: 1, Output: 2})
			}
		})
	}
	wg.Wait()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`llmproxy_requests_total{model="m",operation="chat",provider="p",status_class="2xx"} 1333`,
		`llmproxy_requests_total{model="m",operation="chat",provider="p",status_class="4xx"} 1334`,
		`llmproxy_requests_total{model="m",operation="chat",provider="p",status_class="5xx"} 1333`,
		`llmproxy_tokens_total{model="m",provider="p",type="completion"} 8000`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %s", want)
		}
	}
}
