// Package tracing sends OpenTelemetry traces of the /v1 requests to an
// OTLP/HTTP collector: one server span per request, a child for routing,
// one per attempt (each a plugin call), and a client span per upstream
// HTTP request under its attempt. Attributes follow the OpenTelemetry
// GenAI semantic conventions (gen_ai.*).
//
// Tracing is off unless [tracing] endpoint is set; then a nil *Tracer is
// what the server holds, and every call here is a no-op that costs a nil
// check.
package tracing

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// Options configure the tracer.
type Options struct {
	// Endpoint is the collector's OTLP/HTTP traces URL, such as
	// "http://127.0.0.1:4318/v1/traces".
	Endpoint string
	// SampleRatio is the share of new traces kept (0 to 1); a request that
	// arrives with a sampled traceparent is always kept.
	SampleRatio float64
	// ServiceName is the service.name resource attribute.
	ServiceName string
	// Version is the service.version resource attribute.
	Version string
	// PropagateUpstream adds traceparent to the requests sent to the
	// providers.
	PropagateUpstream bool
}

// Tracer makes the spans. A nil *Tracer makes none.
type Tracer struct {
	tp        *sdktrace.TracerProvider
	t         trace.Tracer
	prop      propagation.TraceContext
	propagate bool
}

// New starts the exporter; spans are sent in batches in the background.
func New(o Options) (*Tracer, error) {
	exp := newExporter(o.Endpoint)
	res := resource.NewSchemaless(semconv.ServiceName(o.ServiceName), semconv.ServiceVersion(o.Version))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.SampleRatio))),
	)
	return &Tracer{tp: tp, t: tp.Tracer("github.com/llm-proxy/llm-proxy"), propagate: o.PropagateUpstream}, nil
}

// Shutdown sends the spans still waiting and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// Carrier reads and writes headers for the W3C trace context.
type Carrier = propagation.TextMapCarrier

// StartRequest starts a request's server span, as a child of the
// traceparent in h when there is a valid one. The span's name is
// completed by Request.Finish once the model is known.
func (t *Tracer) StartRequest(h Carrier, operation string) (context.Context, *Span) {
	if t == nil {
		return context.Background(), nil
	}
	ctx := t.prop.Extract(context.Background(), h)
	ctx, s := t.t.Start(ctx, operation, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(semconv.GenAIOperationNameKey.String(OperationName(operation))))
	return ctx, &Span{s: s}
}

// Start starts an internal child span of ctx's.
func (t *Tracer) Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, *Span) {
	if t == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	ctx, s := t.t.Start(ctx, name, trace.WithAttributes(attrs...))
	return ctx, &Span{s: s}
}

// StartUpstream starts the client span of an upstream HTTP request under
// ctx's span, and writes traceparent into h when propagation upstream is
// on.
func (t *Tracer) StartUpstream(ctx context.Context, method, host, path string, h Carrier) *Span {
	if t == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return nil
	}
	ctx, s := t.t.Start(ctx, method, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		semconv.HTTPRequestMethodKey.String(method), semconv.ServerAddress(host), semconv.URLPath(path)))
	if t.propagate {
		t.prop.Inject(ctx, h)
	}
	return &Span{s: s}
}

// Span is a span being recorded; a nil *Span records nothing.
type Span struct{ s trace.Span }

// TraceID is the span's trace id in hex when its trace is sampled (sent
// to the collector), "" otherwise.
func (s *Span) TraceID() string {
	if s == nil || !s.s.SpanContext().IsSampled() {
		return ""
	}
	return s.s.SpanContext().TraceID().String()
}

// SetName renames the span.
func (s *Span) SetName(name string) {
	if s != nil {
		s.s.SetName(name)
	}
}

// Set adds attributes.
func (s *Span) Set(attrs ...attribute.KeyValue) {
	if s != nil {
		s.s.SetAttributes(attrs...)
	}
}

// End ends the span; errType, when set, marks it failed (error.type).
func (s *Span) End(errType string) {
	if s == nil {
		return
	}
	if errType != "" {
		s.s.SetAttributes(semconv.ErrorTypeKey.String(errType))
		s.s.SetStatus(codes.Error, errType)
	}
	s.s.End()
}

// OperationName is gen_ai.operation.name for a plugin operation.
func OperationName(op string) string {
	switch op {
	case "chat", "chat_stream":
		return "chat"
	case "embeddings":
		return "embeddings"
	}
	return op
}

// ProviderName is gen_ai.provider.name for a plugin: the conventions'
// well-known value for the first-party plugins, the plugin's name for
// others.
func ProviderName(plugin string) string {
	switch plugin {
	case "gemini":
		return "gcp.gemini"
	case "azure":
		return "azure.ai.openai"
	}
	return plugin
}
