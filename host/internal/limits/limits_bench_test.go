package limits_test

import (
	"context"
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/keys"
	"github.com/llm-proxy/llm-proxy/host/internal/limits"
)

// BenchmarkAdmit is what a key with an RPM, a TPM and a parallel limit
// costs per request: admission and the end.
func BenchmarkAdmit(b *testing.B) {
	k := limits.New(nil, nil)
	l := keys.Limits{RPM: 1 << 30, TPM: 1 << 30, MaxParallel: 1 << 20}
	ctx := context.Background()
	b.ReportAllocs()
	for range b.N {
		t, _ := k.Admit(ctx, limits.Request{KeyID: "k", Limits: l, Tokens: 100})
		t.Done(90, 0)
	}
}
