package wazevo

import (
	"testing"
	"unsafe"

	"github.com/tetratelabs/wazero/internal/engine/wazevo/wazevoapi"
)

// TestLLMProxyCountdownOffset guards LLM Proxy's patch: compiled code
// reaches the countdown through this constant offset.
func TestLLMProxyCountdownOffset(t *testing.T) {
	var e executionContext
	if got := wazevoapi.Offset(unsafe.Offsetof(e.terminationCountdown)); got != wazevoapi.ExecutionContextOffsetTerminationCountdown {
		t.Fatalf("terminationCountdown is at %d, the compiler uses %d", got, wazevoapi.ExecutionContextOffsetTerminationCountdown)
	}
}
