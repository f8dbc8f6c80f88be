package tracing

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// exporter sends spans to an OTLP/HTTP collector as a protobuf
// ExportTraceServiceRequest. It writes the few OTLP messages it needs with
// protowire instead of using the OpenTelemetry exporter, which links gRPC
// and the generated OTLP types into the binary: about 15 MB of it, and 8 MB
// more resident memory in a proxy that does not trace.
type exporter struct {
	url    string
	client *http.Client
}

func newExporter(url string) *exporter {
	return &exporter{url: url, client: &http.Client{Timeout: 10 * time.Second}}
}

// ExportSpans sends one batch.
func (e *exporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(encodeRequest(spans)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("otlp export: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("otlp export: the collector answered HTTP %d", resp.StatusCode)
	}
	return nil
}

// Shutdown has nothing to release.
func (e *exporter) Shutdown(context.Context) error { return nil }

// Field numbers of the OTLP protobuf messages (opentelemetry-proto,
// collector/trace/v1, trace/v1, common/v1, resource/v1).
const (
	fRequestResourceSpans = 1 // ExportTraceServiceRequest
	fResourceSpansRes     = 1 // ResourceSpans
	fResourceSpansScope   = 2
	fResourceAttrs        = 1 // Resource
	fScopeSpansScope      = 1 // ScopeSpans
	fScopeSpansSpans      = 2
	fScopeName            = 1 // InstrumentationScope
	fScopeVersion         = 2
	fSpanTraceID          = 1 // Span
	fSpanSpanID           = 2
	fSpanTraceState       = 3
	fSpanParentID         = 4
	fSpanName             = 5
	fSpanKind             = 6
	fSpanStart            = 7
	fSpanEnd              = 8
	fSpanAttrs            = 9
	fSpanDroppedAttrs     = 10
	fSpanStatus           = 15
	fSpanFlags            = 16
	fStatusMessage        = 2 // Status
	fStatusCode           = 3
	fKVKey                = 1 // KeyValue
	fKVValue              = 2
	fAnyString            = 1 // AnyValue
	fAnyBool              = 2
	fAnyInt               = 3
	fAnyDouble            = 4
	fAnyArray             = 5
	fArrayValues          = 1 // ArrayValue
)

// encodeRequest writes an ExportTraceServiceRequest holding spans,
// grouped by resource and instrumentation scope as OTLP wants them.
func encodeRequest(spans []sdktrace.ReadOnlySpan) []byte {
	type group struct {
		res   []byte // the encoded Resource
		scope []byte // the encoded InstrumentationScope
		spans [][]byte
	}
	var groups []*group
	find := func(res, scope []byte) *group {
		for _, g := range groups {
			if bytes.Equal(g.res, res) && bytes.Equal(g.scope, scope) {
				return g
			}
		}
		g := &group{res: res, scope: scope}
		groups = append(groups, g)
		return g
	}
	for _, s := range spans {
		var res []byte
		if r := s.Resource(); r != nil {
			for _, kv := range r.Attributes() {
				res = protowire.AppendTag(res, fResourceAttrs, protowire.BytesType)
				res = protowire.AppendBytes(res, keyValue(kv))
			}
		}
		var scope []byte
		is := s.InstrumentationScope()
		scope = appendString(scope, fScopeName, is.Name)
		scope = appendString(scope, fScopeVersion, is.Version)
		g := find(res, scope)
		g.spans = append(g.spans, span(s))
	}
	var out []byte
	for _, g := range groups {
		var ss []byte
		ss = protowire.AppendTag(ss, fScopeSpansScope, protowire.BytesType)
		ss = protowire.AppendBytes(ss, g.scope)
		for _, sp := range g.spans {
			ss = protowire.AppendTag(ss, fScopeSpansSpans, protowire.BytesType)
			ss = protowire.AppendBytes(ss, sp)
		}
		var rs []byte
		rs = protowire.AppendTag(rs, fResourceSpansRes, protowire.BytesType)
		rs = protowire.AppendBytes(rs, g.res)
		rs = protowire.AppendTag(rs, fResourceSpansScope, protowire.BytesType)
		rs = protowire.AppendBytes(rs, ss)
		out = protowire.AppendTag(out, fRequestResourceSpans, protowire.BytesType)
		out = protowire.AppendBytes(out, rs)
	}
	return out
}

// span encodes one Span.
func span(s sdktrace.ReadOnlySpan) []byte {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	var b []byte
	b = protowire.AppendTag(b, fSpanTraceID, protowire.BytesType)
	b = protowire.AppendBytes(b, tid[:])
	b = protowire.AppendTag(b, fSpanSpanID, protowire.BytesType)
	b = protowire.AppendBytes(b, sid[:])
	b = appendString(b, fSpanTraceState, sc.TraceState().String())
	if p := s.Parent(); p.SpanID().IsValid() {
		pid := p.SpanID()
		b = protowire.AppendTag(b, fSpanParentID, protowire.BytesType)
		b = protowire.AppendBytes(b, pid[:])
	}
	b = appendString(b, fSpanName, s.Name())
	b = protowire.AppendTag(b, fSpanKind, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(s.SpanKind())) // OTLP numbers the kinds as the API does
	b = protowire.AppendTag(b, fSpanStart, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, uint64(s.StartTime().UnixNano()))
	b = protowire.AppendTag(b, fSpanEnd, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, uint64(s.EndTime().UnixNano()))
	for _, kv := range s.Attributes() {
		b = protowire.AppendTag(b, fSpanAttrs, protowire.BytesType)
		b = protowire.AppendBytes(b, keyValue(kv))
	}
	if n := s.DroppedAttributes(); n > 0 {
		b = protowire.AppendTag(b, fSpanDroppedAttrs, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(n))
	}
	if st := s.Status(); st.Code != codes.Unset {
		var sb []byte
		sb = appendString(sb, fStatusMessage, st.Description)
		code := uint64(1) // STATUS_CODE_OK
		if st.Code == codes.Error {
			code = 2
		}
		sb = protowire.AppendTag(sb, fStatusCode, protowire.VarintType)
		sb = protowire.AppendVarint(sb, code)
		b = protowire.AppendTag(b, fSpanStatus, protowire.BytesType)
		b = protowire.AppendBytes(b, sb)
	}
	b = protowire.AppendTag(b, fSpanFlags, protowire.Fixed32Type)
	flags := uint32(sc.TraceFlags()) | 0x100 // HAS_IS_REMOTE: the parent's remoteness is known
	if s.Parent().IsRemote() {
		flags |= 0x200
	}
	return protowire.AppendFixed32(b, flags)
}

// keyValue encodes one KeyValue.
func keyValue(kv attribute.KeyValue) []byte {
	var b []byte
	b = appendString(b, fKVKey, string(kv.Key))
	b = protowire.AppendTag(b, fKVValue, protowire.BytesType)
	return protowire.AppendBytes(b, anyValue(kv.Value))
}

// anyValue encodes an attribute's value as an AnyValue.
func anyValue(v attribute.Value) []byte {
	var b []byte
	switch v.Type() {
	case attribute.BOOL:
		b = protowire.AppendTag(b, fAnyBool, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = protowire.AppendTag(b, fAnyInt, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, fAnyDouble, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.STRINGSLICE:
		var arr []byte
		for _, e := range sliceValues(v) {
			arr = protowire.AppendTag(arr, fArrayValues, protowire.BytesType)
			arr = protowire.AppendBytes(arr, anyValue(e))
		}
		b = protowire.AppendTag(b, fAnyArray, protowire.BytesType)
		b = protowire.AppendBytes(b, arr)
	default:
		b = protowire.AppendTag(b, fAnyString, protowire.BytesType)
		b = protowire.AppendString(b, v.Emit())
	}
	return b
}

func sliceValues(v attribute.Value) []attribute.Value {
	var out []attribute.Value
	switch v.Type() {
	case attribute.BOOLSLICE:
		for _, x := range v.AsBoolSlice() {
			out = append(out, attribute.BoolValue(x))
		}
	case attribute.INT64SLICE:
		for _, x := range v.AsInt64Slice() {
			out = append(out, attribute.Int64Value(x))
		}
	case attribute.FLOAT64SLICE:
		for _, x := range v.AsFloat64Slice() {
			out = append(out, attribute.Float64Value(x))
		}
	case attribute.STRINGSLICE:
		for _, x := range v.AsStringSlice() {
			out = append(out, attribute.StringValue(x))
		}
	}
	return out
}

// appendString writes a string field, leaving out an empty one as proto3
// does.
func appendString(b []byte, field protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendString(b, s)
}
