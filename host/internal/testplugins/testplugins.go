// Package testplugins builds plugin sources into packed .wasm files for
// tests, exactly as the Taskfile does (GOOS=wasip1, -buildmode=c-shared, the
// manifest appended as a custom section). Builds are cached in the system
// temp folder by a hash of their inputs, so test packages running in
// parallel, and repeated runs, build each plugin once.
package testplugins

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// Root returns the repository root (the folder holding go.mod).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// CacheDir is where tests share wazero's compilation cache.
func CacheDir() string { return filepath.Join(os.TempDir(), "llm-proxy-test-wazero") }

// Build returns the path of the packed .wasm built from the plugin source
// folder dir (relative to the repository root), using dir/manifest.json.
func Build(t testing.TB, dir string) string {
	t.Helper()
	return BuildID(t, dir, "")
}

// BuildID is Build with a given Go build ID, which yields a different file
// from the same source: a new build that wazero has never compiled.
func BuildID(t testing.TB, dir, buildID string) string {
	t.Helper()
	path, err := build(dir, buildID)
	if err != nil {
		t.Fatalf("build plugin %s: %v", dir, err)
	}
	return path
}

func build(dir, buildID string) (string, error) {
	root := Root()
	src := filepath.Join(root, dir)
	h := sha256.New()
	for _, d := range []string{src, filepath.Join(root, "sdk")} {
		if err := hashTree(h, d); err != nil {
			return "", err
		}
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	h.Write([]byte(runtime.Version() + buildID))
	sum := hex.EncodeToString(h.Sum(nil))[:16]
	outDir := filepath.Join(os.TempDir(), "llm-proxy-testplugins")
	out := filepath.Join(outDir, strings.ReplaceAll(dir, string(filepath.Separator), "_")+"-"+sum+".wasm")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(outDir, ".build-*")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	args := []string{"build", "-buildmode=c-shared", "-o", tmp.Name()}
	if buildID != "" {
		args = append(args, "-ldflags=-buildid="+buildID)
	}
	cmd := exec.Command("go", append(args, "./"+filepath.ToSlash(dir))...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v\n%s", err, b)
	}
	wasm, err := os.ReadFile(tmp.Name())
	if err != nil {
		return "", err
	}
	manifest, err := os.ReadFile(filepath.Join(src, "manifest.json"))
	if err != nil {
		return "", err
	}
	if _, err := abi.ParseManifest(manifest); err != nil {
		return "", err
	}
	packed, err := abi.WithManifest(wasm, manifest)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(tmp.Name(), packed, 0o644); err != nil {
		return "", err
	}
	return out, os.Rename(tmp.Name(), out)
}

func hashTree(h interface{ Write([]byte) (int, error) }, dir string) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".go") || strings.HasSuffix(p, ".json")) && !strings.HasSuffix(p, "_test.go") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		h.Write([]byte(f))
		h.Write(b)
	}
	return nil
}

// Install copies a built plugin into a plugins folder under name, the way
// an operator drops a file: written aside, then renamed into place.
func Install(t testing.TB, wasm, dir, name string) {
	t.Helper()
	b, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	InstallBytes(t, b, dir, name)
}

// InstallBytes writes b into dir/name atomically.
func InstallBytes(t testing.TB, b []byte, dir, name string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}
