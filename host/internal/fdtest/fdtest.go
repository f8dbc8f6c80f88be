//go:build unix

// Package fdtest takes every file descriptor a test process may open, for
// tests of what must keep working when a burst of connections has used
// them all.
package fdtest

import (
	"errors"
	"os"
	"syscall"
	"testing"
)

// TakeAll lowers the process's soft limit on open files to at most 4,096
// (so taking them is quick) and opens /dev/null until no file can be
// opened. Cleanup closes those files and restores the limit. The test is
// skipped where the limit cannot be read or changed. A test that calls it
// must not run in parallel with others in its process.
func TakeAll(t testing.TB) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	low := lim
	low.Cur = min(lim.Cur, 4096)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skip(err)
	}
	var files []*os.File
	t.Cleanup(func() {
		for _, f := range files {
			f.Close()
		}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Error(err)
		}
	})
	for {
		f, err := os.Open(os.DevNull)
		if errors.Is(err, syscall.EMFILE) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
}
