package tracing

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// TestEncodeRequest: what the hand-written encoder writes is read back by
// the official OTLP types field for field.
func TestEncodeRequest(t *testing.T) {
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	pid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	start := time.Unix(1700000000, 123)
	stub := tracetest.SpanStub{
		Name:        "chat gpt-4o-mini",
		SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}),
		Parent:      trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: pid, Remote: true}),
		SpanKind:    trace.SpanKindServer,
		StartTime:   start, EndTime: start.Add(time.Second),
		Attributes: []attribute.KeyValue{attribute.String("s", "v"), attribute.Int("i", -7), attribute.Bool("b", true),
			attribute.Float64("f", 2.5), attribute.StringSlice("ss", []string{"x", "y"})},
		Status:               sdktrace.Status{Code: codes.Error, Description: "boom"},
		Resource:             resource.NewSchemaless(attribute.String("service.name", "svc")),
		InstrumentationScope: instrumentation.Scope{Name: "scope", Version: "1"},
	}
	other := stub
	other.Name, other.SpanKind, other.Status = "route", trace.SpanKindInternal, sdktrace.Status{}
	b := encodeRequest([]sdktrace.ReadOnlySpan{stub.Snapshot(), other.Snapshot()})
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	if len(req.ResourceSpans) != 1 || len(req.ResourceSpans[0].ScopeSpans) != 1 {
		t.Fatalf("not grouped by resource and scope: %v", &req)
	}
	rs := req.ResourceSpans[0]
	if a := rs.Resource.Attributes[0]; a.Key != "service.name" || a.Value.GetStringValue() != "svc" {
		t.Errorf("resource %v", rs.Resource)
	}
	ss := rs.ScopeSpans[0]
	if ss.Scope.Name != "scope" || ss.Scope.Version != "1" || len(ss.Spans) != 2 {
		t.Fatalf("scope spans %v", ss)
	}
	sp := ss.Spans[0]
	if string(sp.TraceId) != string(tid[:]) || string(sp.SpanId) != string(sid[:]) || string(sp.ParentSpanId) != string(pid[:]) ||
		sp.Name != "chat gpt-4o-mini" || sp.Kind != tracepb.Span_SPAN_KIND_SERVER ||
		sp.StartTimeUnixNano != uint64(start.UnixNano()) || sp.EndTimeUnixNano != uint64(start.Add(time.Second).UnixNano()) ||
		sp.Status.Code != tracepb.Status_STATUS_CODE_ERROR || sp.Status.Message != "boom" || sp.Flags != 0x301 {
		t.Errorf("span %v", sp)
	}
	got := map[string]string{}
	for _, a := range sp.Attributes {
		got[a.Key] = a.Value.String()
	}
	want := map[string]string{"s": `string_value:"v"`, "i": "int_value:-7", "b": "bool_value:true", "f": "double_value:2.5",
		"ss": `array_value:{values:{string_value:"x"} values:{string_value:"y"}}`}
	for k, w := range want {
		if g := got[k]; normalize(g) != normalize(w) {
			t.Errorf("attribute %s = %s, want %s", k, g, w)
		}
	}
	if r := ss.Spans[1]; r.Kind != tracepb.Span_SPAN_KIND_INTERNAL || r.Status != nil {
		t.Errorf("second span %v", r)
	}
}

// normalize drops the spaces prototext may put in its output at random.
func normalize(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' {
			out = append(out, s[i])
		}
	}
	return string(out)
}
