package wazevo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/sys"
)

// callBomb is a module without a single loop whose exported "run" makes
// 2^depth calls: function i calls function i+1 twice.
func callBomb(depth int) []byte {
	section := func(id byte, body []byte) []byte {
		return append(append([]byte{id}, leb(len(body))...), body...)
	}
	types := []byte{1, 0x60, 0, 0}
	funcs := append(leb(depth+1), make([]byte, depth+1)...)
	exports := []byte{1, 3, 'r', 'u', 'n', 0, 0}
	code := leb(depth + 1)
	for i := 0; i <= depth; i++ {
		body := []byte{0} // no locals
		if i < depth {
			next := leb(i + 1)
			body = append(append(append(body, 0x10), next...), 0x10)
			body = append(body, next...)
		}
		body = append(body, 0x0b)
		code = append(append(code, leb(len(body))...), body...)
	}
	m := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	m = append(m, section(1, types)...)
	m = append(m, section(3, funcs)...)
	m = append(m, section(7, exports)...)
	return append(m, section(10, code)...)
}

func leb(n int) []byte {
	var b []byte
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// TestLLMProxyLooplessCodeStopsAtDeadline: with the countdown at function
// entries too, code with no loop at all (2^40 calls, hours of work) still
// notices its closed module and ends at the deadline.
func TestLLMProxyLooplessCodeStopsAtDeadline(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(true))
	defer r.Close(ctx)
	mod, err := r.Instantiate(ctx, callBomb(40))
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	_, err = mod.ExportedFunction("run").Call(cctx)
	var exit *sys.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != sys.ExitCodeDeadlineExceeded {
		t.Fatalf("run: %v, want the deadline's exit error", err)
	}
}
