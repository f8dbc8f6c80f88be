package plugin_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// abi1Module is a plugin as ABI 1 shaped it: one blocking entry point,
// llmproxy_handle, and the llmproxy_v1 imports.
const abi1Module = `(module
  (import "llmproxy_v1" "emit" (func $emit (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_initialize"))
  (func (export "llmproxy_handle") (param i32) (result i32) (i32.const 0)))`

// TestABI1PluginRefused: a plugin built for ABI 1 is refused at load with a
// message that names ABI 2, whether its manifest still says 1.x or claims
// 2.0 over the old imports and entry point.
func TestABI1PluginRefused(t *testing.T) {
	wat2wasm, err := exec.LookPath("wat2wasm")
	if err != nil {
		if os.Getenv("LLMPROXY_REQUIRE_WABT") == "1" {
			t.Fatal("wat2wasm is required (LLMPROXY_REQUIRE_WABT=1) but not on PATH")
		}
		t.Skip("wat2wasm not on PATH")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "v1.wat")
	if err := os.WriteFile(src, []byte(abi1Module), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "v1.wasm")
	if b, err := exec.Command(wat2wasm, src, "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, b)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ abi, want string }{
		{"1.2", "plugin old targets ABI 1.x, this host serves ABI 2.x; rebuild it with the ABI 2 SDK"},
		{"2.0", "imports module llmproxy_v1: it was built for ABI 1, which this host no longer serves; rebuild it with the ABI 2 SDK (llmproxy_v2)"},
		{"2.0", "exports llmproxy_handle, the entry point of ABI 1: rebuild it with the ABI 2 SDK"},
		{"2.0", "does not export llmproxy_on_start"},
	} {
		packed, err := abi.WithManifest(wasm, []byte(`{"name":"old","version":"1","abi":"`+tc.abi+`","capabilities":["chat"],"auth":{"type":"none"}}`))
		if err != nil {
			t.Fatal(err)
		}
		_, err = plugin.Load(context.Background(), packed, plugin.LoadOptions{})
		if !errors.Is(err, plugin.ErrABI) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("abi %s: %v\nwant it to say %q", tc.abi, err, tc.want)
		}
	}
}
