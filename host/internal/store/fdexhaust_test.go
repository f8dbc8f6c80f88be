//go:build unix

package store

import (
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/fdtest"
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
	fdtest.TakeAll(t)
	if err := s.InsertLogs(t.Context(), logRows("burst", 217, 100)); err != nil {
		t.Fatalf("insert with no file descriptor left: %v", err)
	}
}
