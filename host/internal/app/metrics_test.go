package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
)

// scrape reads url's metrics with token and parses them with the
// Prometheus text parser.
func scrape(t *testing.T, url, token string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, body := rawGet(t, url, token)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET %s: %d %s\n%s", url, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the metrics do not parse: %v\n%s", err, body)
	}
	return fams
}

// sample finds the sample of family name whose labels include want
// ("k=v" pairs), and returns its value: a counter's or gauge's, or a
// histogram's count. It fails when there is not exactly one.
func sample(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	v, n := 0.0, 0
	f := fams[name]
	if f == nil {
		t.Fatalf("no family %s", name)
	}
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for _, kv := range want {
			k, val, _ := strings.Cut(kv, "=")
			if labels[k] != val {
				ok = false
			}
		}
		if !ok {
			continue
		}
		n++
		switch {
		case m.Counter != nil:
			v = m.Counter.GetValue()
		case m.Gauge != nil:
			v = m.Gauge.GetValue()
		case m.Histogram != nil:
			v = float64(m.Histogram.GetSampleCount())
		}
	}
	if n != 1 {
		t.Fatalf("%s{%s}: %d samples, want 1\n%s", name, strings.Join(want, ","), n, dump(f))
	}
	return v
}

func dump(f *dto.MetricFamily) string {
	var lines []string
	for _, m := range f.Metric {
		lines = append(lines, m.String())
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func expectMetric(t *testing.T, fams map[string]*dto.MetricFamily, want float64, name string, labels ...string) {
	t.Helper()
	if got := sample(t, fams, name, labels...); got != want {
		t.Errorf("%s{%s} = %v, want %v", name, strings.Join(labels, ","), got, want)
	}
}

// TestMetrics: after a known mix of requests, GET /metrics parses with
// the Prometheus text parser and counts exactly what was sent, with the
// token sums the upstream reported; it is closed to everyone but the admin
// key and the metrics token, and open on [metrics] listen.
func TestMetrics(t *testing.T) {
	p := startProxy(t, func(c *config.Config) {
		c.Log.Level = "warn"
		c.Prices = map[string]config.PriceConfig{"gpt-4o-mini": {Input: 1, Output: 2}}
		c.Metrics.PerKey = true
		c.Metrics.Listen = "127.0.0.1:0"
		// The harness's environment has few variables: the upstream's
		// key stands in for the scraper's token.
		c.Metrics.TokenEnv = "FAKE_UPSTREAM_KEY"
	})
	ctx := context.Background()
	c := p.client(adminKey)
	var prompt, completion int64
	for i := range 3 {
		resp, err := c.Chat.Completions.New(ctx, chatParams("gpt-4o-mini", fmt.Sprintf("chat number %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		prompt, completion = prompt+resp.Usage.PromptTokens, completion+resp.Usage.CompletionTokens
	}
	for range 2 {
		params := chatParams("gpt-4o-mini", "a stream, please")
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		s := c.Chat.Completions.NewStreaming(ctx, params)
		acc := openai.ChatCompletionAccumulator{}
		for s.Next() {
			acc.AddChunk(s.Current())
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		prompt, completion = prompt+acc.Usage.PromptTokens, completion+acc.Usage.CompletionTokens
	}
	if _, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "text-embedding-3-small",
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("embed me")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Chat.Completions.New(ctx, chatParams(fakeupstream.ModelFail500, "fails")); err == nil {
		t.Fatal("fail-500 answered")
	}
	if _, err := c.Chat.Completions.New(ctx, chatParams("no-such-model", "?")); err == nil {
		t.Fatal("an unknown model answered")
	}
	if _, err := c.Chat.Completions.New(ctx, chatParams("fake/any-model-at-all", "?")); err != nil {
		t.Fatal(err)
	}
	key := createKey(t, p, `{"name":"metered","rpm":2}`)
	kc := p.client(key.Key)
	for i := range 3 {
		_, err := kc.Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "with a key"))
		if (err == nil) != (i < 2) {
			t.Fatalf("key request %d: %v", i, err)
		}
	}
	// A plugin that exits traps; one that spins is stopped at its
	// deadline.
	for _, m := range []string{"exit", "loop"} {
		if _, err := c.Chat.Completions.New(ctx, chatParams(m, "misbehave")); err == nil {
			t.Fatalf("the hostile plugin's %s answered", m)
		}
	}
	waitFor(t, func() bool {
		_, b := adminCall(t, p, "GET", "/api/stats", "")
		var st struct {
			Log struct{ Written int } `json:"request_log"`
		}
		return json.Unmarshal(b, &st) == nil && st.Log.Written == 14
	})

	fams := scrape(t, p.URL+"/metrics", adminKey)
	const req = "llmproxy_requests_total"
	expectMetric(t, fams, 5, req, "provider=fake", "model=gpt-4o-mini", "operation=chat", "status_class=2xx")
	expectMetric(t, fams, 2, req, "provider=fake", "model=gpt-4o-mini", "operation=chat_stream", "status_class=2xx")
	expectMetric(t, fams, 1, req, "provider=fake", "model=text-embedding-3-small", "operation=embeddings", "status_class=2xx")
	expectMetric(t, fams, 1, req, "provider=fake", "model="+fakeupstream.ModelFail500, "operation=chat", "status_class=5xx")
	expectMetric(t, fams, 1, req, "provider=none", "model=other", "operation=chat", "status_class=4xx")
	expectMetric(t, fams, 1, req, "provider=fake", "model=other", "operation=chat", "status_class=2xx")
	expectMetric(t, fams, 1, req, "provider=none", "model=gpt-4o-mini", "operation=chat", "status_class=4xx")
	expectMetric(t, fams, 1, req, "provider=hostile", "model=exit", "operation=chat", "status_class=5xx")
	expectMetric(t, fams, 1, req, "provider=hostile", "model=loop", "operation=chat", "status_class=5xx")
	expectMetric(t, fams, 5, "llmproxy_request_duration_seconds", "provider=fake", "model=gpt-4o-mini", "operation=chat")
	expectMetric(t, fams, 2, "llmproxy_time_to_first_byte_seconds", "provider=fake", "model=gpt-4o-mini", "operation=chat_stream")

	// The tokens the upstream reported for the chats and streams the SDK
	// saw (the key's two chats are the same as the admin's: counted from
	// their usage too).
	keyPrompt, keyCompletion := sample(t, fams, "llmproxy_key_tokens_total", "key_id="+key.ID, "type=prompt"),
		sample(t, fams, "llmproxy_key_tokens_total", "key_id="+key.ID, "type=completion")
	expectMetric(t, fams, float64(prompt)+keyPrompt, "llmproxy_tokens_total", "provider=fake", "model=gpt-4o-mini", "type=prompt")
	expectMetric(t, fams, float64(completion)+keyCompletion, "llmproxy_tokens_total", "provider=fake", "model=gpt-4o-mini", "type=completion")
	if keyPrompt == 0 || prompt == 0 {
		t.Errorf("no tokens counted: %v %v", keyPrompt, prompt)
	}
	wantCost := (float64(prompt)+keyPrompt)*1e-6 + (float64(completion)+keyCompletion)*2e-6
	if got := sample(t, fams, "llmproxy_cost_usd_total", "provider=fake", "model=gpt-4o-mini"); got < wantCost*0.999 || got > wantCost*1.001 {
		t.Errorf("cost %v, want %v", got, wantCost)
	}

	// Routing and limits.
	expectMetric(t, fams, 3, "llmproxy_route_attempts_total", "provider=fake", "model="+fakeupstream.ModelFail500, "result=error")
	expectMetric(t, fams, 2, "llmproxy_route_retries_total", "model="+fakeupstream.ModelFail500)
	expectMetric(t, fams, 1, "llmproxy_limit_rejections_total", "reason=rpm")
	expectMetric(t, fams, 1, "llmproxy_breaker_state", "target=fake/"+fakeupstream.ModelFail500, "state=closed")
	expectMetric(t, fams, 0, "llmproxy_breaker_state", "target=fake/"+fakeupstream.ModelFail500, "state=open")
	expectMetric(t, fams, 2, "llmproxy_key_requests_total", "key_id="+key.ID, "status_class=2xx")
	expectMetric(t, fams, 1, "llmproxy_key_requests_total", "key_id="+key.ID, "status_class=4xx")

	// The plugin runtime, the request log, the process.
	if sample(t, fams, "llmproxy_plugin_traps_total", "plugin=hostile") < 1 {
		t.Error("the hostile plugin's trap is not counted")
	}
	if sample(t, fams, "llmproxy_plugin_timeouts_total", "plugin=hostile") < 1 {
		t.Error("the hostile plugin's timeout is not counted")
	}
	if sample(t, fams, "llmproxy_plugin_callback_duration_seconds", "plugin=openai") == 0 {
		t.Error("no openai callbacks timed")
	}
	expectMetric(t, fams, 1, "llmproxy_plugin_ready", "plugin=openai")
	expectMetric(t, fams, 0, "llmproxy_requests_in_flight")
	expectMetric(t, fams, 0, "llmproxy_streams_open")
	expectMetric(t, fams, 14, "llmproxy_request_log_rows_written_total")
	expectMetric(t, fams, 0, "llmproxy_request_log_rows_dropped_total")
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "llmproxy_ws_subscribers"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}

	// Who may read them.
	for _, c := range []struct {
		what, token string
		status      int
		code        string
	}{
		{"no credentials", "", 401, "missing_credentials"},
		{"a client key", key.Key, 401, "invalid_credentials"},
		{"a wrong token", "not-the-token", 401, "invalid_credentials"},
	} {
		resp, b := rawGet(t, p.URL+"/metrics", c.token)
		expectAPIError(t, c.what, resp.StatusCode, b, c.status, c.code, "")
	}
	scrape(t, p.URL+"/metrics", upstreamKey) // the metrics token
	// The token opens nothing else.
	if resp, _ := rawGet(t, p.URL+"/api/keys", upstreamKey); resp.StatusCode != 401 {
		t.Errorf("the metrics token reads /api/keys: %d", resp.StatusCode)
	}
	// [metrics] listen: no credentials needed.
	open := scrape(t, "http://"+p.App.MetricsAddr()+"/metrics", "")
	expectMetric(t, open, 5, req, "provider=fake", "model=gpt-4o-mini", "operation=chat", "status_class=2xx")
}

// TestMetricsOff: with [metrics] enabled = false there is no /metrics.
func TestMetricsOff(t *testing.T) {
	p := startProxy(t, func(c *config.Config) { c.Metrics.Enabled = false })
	resp, b := rawGet(t, p.URL+"/metrics", adminKey)
	expectAPIError(t, "metrics off", resp.StatusCode, b, 404, "unknown_url", "")
}
