package store

import (
	"errors"
	"os"
	"syscall"
	"testing"
)

// TestWritesWhileOutOfFileDescriptors: a burst of connections can use every
// file descriptor the process may open. The writer's connection and its
// files are already open, so request-log batches must still commit: a
// transaction that needed a temporary file (a statement journal, once the
// log holds a few thousand rows) would fail with "unable to open database
// file" and lose its rows.
func TestWritesWhileOutOfFileDescriptors(t *testing.T) {
	s := openStore(t)
	for i := range 60 {
		if err := s.InsertLogs(t.Context(), logRows("warm"+string(rune('a'+i%26))+string(rune('a'+i/26)), 217, int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	// Lower the limit near what is open, then take the rest.
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
	defer func() {
		for _, f := range files {
			f.Close()
		}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Error(err)
		}
	}()
	for {
		f, err := os.Open(os.DevNull)
		if errors.Is(err, syscall.EMFILE) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if err := s.InsertLogs(t.Context(), logRows("burst", 217, 100)); err != nil {
		t.Fatalf("insert with no file descriptor left: %v", err)
	}
}
