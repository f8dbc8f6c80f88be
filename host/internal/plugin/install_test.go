//go:build linux

package plugin_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
)

// TestInstallReportsAFailedWrite: a plugin upload whose bytes could not all
// be written (a full disk; here the file size limit) is an error, and the
// plugin already installed under that name stays as it was. Go ignores
// SIGXFSZ, so the write just fails with EFBIG.
func TestInstallReportsAFailedWrite(t *testing.T) {
	dir := t.TempDir()
	old := []byte("the working plugin")
	path := filepath.Join(dir, "p.wasm")
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := plugin.NewRegistry(plugin.RegistryOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skip(err)
	}
	low := lim
	low.Cur = 4096
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &low); err != nil {
		t.Skip(err)
	}
	_, err = r.Install(context.Background(), "p.wasm", bytes.Repeat([]byte{1}, 64<<10))
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	if err == nil {
		t.Fatal("a short write was reported as installed")
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, old) {
		t.Fatalf("the installed plugin was replaced by %d bytes", len(got))
	}
}
