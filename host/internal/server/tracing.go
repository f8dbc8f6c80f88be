package server

import (
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/requestlog"
	"github.com/llm-proxy/llm-proxy/host/internal/router"
	"github.com/llm-proxy/llm-proxy/host/internal/tracing"
)

// requestHeaders lets the trace context be read from a request's
// headers (traceparent, tracestate).
type requestHeaders struct{ h *fasthttp.RequestHeader }

func (c requestHeaders) Get(key string) string { return string(c.h.Peek(key)) }
func (c requestHeaders) Set(key, value string) { c.h.Set(key, value) }
func (c requestHeaders) Keys() []string {
	var keys []string
	c.h.VisitAll(func(k, _ []byte) { keys = append(keys, string(k)) })
	return keys
}

// endSpan completes and ends a request's span with what is known at its
// end: the provider and upstream model that answered, the usage and the
// status.
func (s *Server) endSpan(r *request, e *requestlog.Entry, err *apierror.Error) {
	sp := r.span
	sp.Set(semconv.HTTPResponseStatusCode(e.Status), attribute.Int("llmproxy.attempts", len(r.attempts)),
		attribute.String("llmproxy.request_id", r.id))
	if r.provider != nil {
		sp.Set(attribute.String("llmproxy.provider", r.provider.Name), semconv.GenAIProviderNameKey.String(tracing.ProviderName(r.provider.Plugin)))
	}
	if r.upstreamModel != "" {
		sp.Set(semconv.GenAIResponseModel(r.upstreamModel))
	}
	if r.usage.known {
		sp.Set(semconv.GenAIUsageInputTokens(int(e.PromptTokens)), semconv.GenAIUsageOutputTokens(int(e.CompletionTokens)))
	}
	sp.End(errorType(err))
}

// traceRoute records the routing decision as a span of its own: the
// route, its strategy, and how many of its targets were planned (none
// when every breaker is open).
func (s *Server) traceRoute(r *request, planned int) {
	rt := r.route
	_, sp := s.opts.Tracer.Start(r.ctx, "route", attribute.String("llmproxy.route", rt.Model),
		attribute.String("llmproxy.strategy", rt.Strategy.String()), attribute.Int("llmproxy.targets", len(rt.Targets)),
		attribute.Int("llmproxy.planned", planned))
	errType := ""
	if planned == 0 {
		errType = string(apierror.CodeUpstreamUnavailable)
	}
	sp.End(errType)
}

// startAttempt starts the span of an attempt at t, under the request's.
func (s *Server) startAttempt(r *request, t *router.Target) *tracing.Span {
	if r.span == nil {
		return nil
	}
	ctx, sp := s.opts.Tracer.Start(r.ctx, "attempt "+t.Provider.Name,
		attribute.String("llmproxy.provider", t.Provider.Name), semconv.GenAIProviderNameKey.String(tracing.ProviderName(t.Provider.Plugin)),
		semconv.GenAIRequestModel(t.Model), attribute.Int("llmproxy.attempt", len(r.attempts)+1))
	r.attemptCtx = ctx
	return sp
}

// errorType is a span's error.type: the error's code, or its type.
func errorType(err *apierror.Error) string {
	if err == nil {
		return ""
	}
	if err.Code != apierror.NoCode {
		return string(err.Code)
	}
	return err.Type
}
