package app_test

import (
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
)

// otlpReceiver is a collector's OTLP/HTTP traces endpoint: it decodes
// each export's protobuf and keeps the spans.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
	names []string // service.name of each span's resource
}

func startReceiver(t *testing.T) *otlpReceiver {
	rc := &otlpReceiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		var req coltracepb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(b, &req) != nil {
			http.Error(w, "not an OTLP/HTTP protobuf trace export", 400)
			return
		}
		rc.mu.Lock()
		for _, rs := range req.ResourceSpans {
			service := ""
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					rc.spans = append(rc.spans, sp)
					rc.names = append(rc.names, service)
				}
			}
		}
		rc.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Write(out)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// trace returns the spans received of the trace id (hex).
func (rc *otlpReceiver) trace(id string) []*tracepb.Span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []*tracepb.Span
	for _, sp := range rc.spans {
		if hex.EncodeToString(sp.TraceId) == id {
			out = append(out, sp)
		}
	}
	return out
}

func (rc *otlpReceiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.spans)
}

func attr(sp *tracepb.Span, key string) *commonpb.AnyValue {
	for _, a := range sp.Attributes {
		if a.Key == key {
			return a.Value
		}
	}
	return nil
}

// cannedUpstream answers every chat with the same OpenAI completion and
// records the traceparent of each request.
func cannedUpstream(t *testing.T) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var parents []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		parents = append(parents, r.Header.Get("traceparent"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"canned-upstream-model","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":300,"completion_tokens":2,"total_tokens":302}}`))
	}))
	t.Cleanup(up.Close)
	return up, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), parents...)
	}
}

// tracedChat sends a chat for model with an optional traceparent and
// returns the request id.
func tracedChat(t *testing.T, p *proxy, model, traceparent string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", p.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"trace me"}]}`))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return resp.Header.Get("X-Request-Id")
}

// TestTracing: a request that arrives with a traceparent is traced as its
// child, with a route span, an attempt span and the upstream request's
// client span under it, GenAI attributes on the request's span, the trace
// id in the request log and the log line, and the traceparent sent on
// upstream when propagate_upstream allows it.
func TestTracing(t *testing.T) {
	rc := startReceiver(t)
	up, parents := cannedUpstream(t)
	p := startProxy(t, func(c *config.Config) {
		c.Tracing.Endpoint = rc.URL + "/v1/traces"
		c.Tracing.ServiceName = "proxy-under-test"
		c.Tracing.PropagateUpstream = true
		c.Providers = append(c.Providers, config.ProviderConfig{Name: "canned", Plugin: "openai", BaseURL: up.URL + "/v1",
			Models: []string{"traced-model"}, AllowPrivateNetwork: true})
	})
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	id := tracedChat(t, p, "traced-model", "00-"+traceID+"-"+parentID+"-01")

	var spans []*tracepb.Span
	waitFor(t, func() bool { spans = rc.trace(traceID); return len(spans) >= 4 })
	byName := map[string]*tracepb.Span{}
	for _, sp := range spans {
		byName[sp.Name] = sp
	}
	server, route, attempt, upstream := byName["chat traced-model"], byName["route"], byName["attempt canned"], byName["POST"]
	if server == nil || route == nil || attempt == nil || upstream == nil || len(spans) != 4 {
		var names []string
		for _, sp := range spans {
			names = append(names, sp.Name)
		}
		t.Fatalf("spans %q; want chat traced-model, route, attempt canned, POST", names)
	}
	// The tree: client's parent -> request -> {route, attempt -> POST}.
	parentOf := func(sp *tracepb.Span) string { return hex.EncodeToString(sp.ParentSpanId) }
	spanID := func(sp *tracepb.Span) string { return hex.EncodeToString(sp.SpanId) }
	if parentOf(server) != parentID || server.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("request span: parent %s kind %v", parentOf(server), server.Kind)
	}
	if parentOf(route) != spanID(server) || parentOf(attempt) != spanID(server) || parentOf(upstream) != spanID(attempt) {
		t.Errorf("parents: route %s, attempt %s, upstream %s; request %s, attempt %s",
			parentOf(route), parentOf(attempt), parentOf(upstream), spanID(server), spanID(attempt))
	}
	if upstream.Kind != tracepb.Span_SPAN_KIND_CLIENT || attr(upstream, "http.response.status_code").GetIntValue() != 200 {
		t.Errorf("upstream span: kind %v, attributes %v", upstream.Kind, upstream.Attributes)
	}
	for key, want := range map[string]string{
		"gen_ai.operation.name": "chat", "gen_ai.request.model": "traced-model", "gen_ai.response.model": "traced-model",
		"gen_ai.provider.name": "openai", "llmproxy.provider": "canned", "llmproxy.request_id": id,
	} {
		if got := attr(server, key).GetStringValue(); got != want {
			t.Errorf("request span %s = %q, want %q", key, got, want)
		}
	}
	if attr(server, "gen_ai.usage.input_tokens").GetIntValue() != 300 || attr(server, "gen_ai.usage.output_tokens").GetIntValue() != 2 ||
		attr(server, "http.response.status_code").GetIntValue() != 200 {
		t.Errorf("request span attributes %v", server.Attributes)
	}
	if rc.names[0] != "proxy-under-test" {
		t.Errorf("service.name %q", rc.names[0])
	}
	// Propagated upstream, in the same trace.
	if ps := parents(); len(ps) != 1 || !strings.Contains(ps[0], traceID) {
		t.Errorf("traceparent upstream: %q", ps)
	}
	// The trace id in the request log and in the log line.
	var detail struct {
		TraceID string `json:"trace_id"`
	}
	waitFor(t, func() bool {
		status, b := adminCall(t, p, "GET", "/api/logs/"+id, "")
		return status == 200 && json.Unmarshal(b, &detail) == nil
	})
	if detail.TraceID != traceID {
		t.Errorf("log row trace_id %q", detail.TraceID)
	}
	if !strings.Contains(p.Logs.String(), "trace_id="+traceID) {
		t.Errorf("no trace_id in the log line")
	}
}

// TestTracingSampledAndOff: with sample_ratio 0 a request without a
// traceparent is not traced (and its log row has no trace id), one whose
// traceparent says sampled is; without propagate_upstream the upstream
// never sees a traceparent; with tracing off nothing is sent at all.
func TestTracingSampledAndOff(t *testing.T) {
	rc := startReceiver(t)
	up, parents := cannedUpstream(t)
	canned := config.ProviderConfig{Name: "canned", Plugin: "openai", BaseURL: up.URL + "/v1", Models: []string{"traced-model"}, AllowPrivateNetwork: true}
	p := startProxy(t, func(c *config.Config) {
		c.Tracing.Endpoint = rc.URL + "/v1/traces"
		c.Tracing.SampleRatio = 0
		c.Providers = append(c.Providers, canned)
	})
	unsampled := tracedChat(t, p, "traced-model", "")
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	tracedChat(t, p, "traced-model", "00-"+traceID+"-b7ad6b7169203331-01")
	waitFor(t, func() bool { return len(rc.trace(traceID)) == 4 })
	if n := rc.count(); n != 4 {
		t.Errorf("%d spans; want the sampled request's 4 only", n)
	}
	for _, tp := range parents() {
		if tp != "" {
			t.Errorf("traceparent sent upstream without propagate_upstream: %q", tp)
		}
	}
	var detail struct {
		TraceID *string `json:"trace_id"`
	}
	waitFor(t, func() bool {
		status, b := adminCall(t, p, "GET", "/api/logs/"+unsampled, "")
		return status == 200 && json.Unmarshal(b, &detail) == nil
	})
	if detail.TraceID == nil || *detail.TraceID != "" {
		t.Errorf("an unsampled request's trace_id: %v", detail.TraceID)
	}

	// Tracing off: nothing reaches the receiver.
	before := rc.count()
	off := startProxy(t, func(c *config.Config) { c.Providers = append(c.Providers, canned) })
	tracedChat(t, off, "traced-model", "00-"+traceID+"-b7ad6b7169203331-01")
	off.Stop() // a tracer would send its spans on shutdown
	time.Sleep(1500 * time.Millisecond)
	if n := rc.count(); n != before {
		t.Errorf("tracing off, yet %d spans arrived", n-before)
	}
}
