package fakeupstream

import (
	"net/http"
	"time"
)

// ModelContextOverflow answers 400 with the code context_length_exceeded,
// as OpenAI does for a prompt longer than the model's context window.
const ModelContextOverflow = "context-overflow"

// Faults make every chat request of a server misbehave, whatever its
// model, so that routing over several upstreams can be tested.
type Faults struct {
	// FailFirst chat requests answer Status (500 when 0) with an error
	// body; the ones after it are served normally.
	FailFirst int64
	Status    int
	// RetryAfter, when set, goes with those failures as Retry-After.
	RetryAfter string
	// TTFB delays every chat answer (until the client leaves, at most).
	TTFB time.Duration
	// RateLimitKey: every request authenticated with this key gets 429
	// (with RetryAfter, if set).
	RateLimitKey string
}

// Chats is how many chat completion requests the server received,
// counted even when recording is off.
func (s *Server) Chats() int64 { return s.chats.Load() }

// fault applies Options.Faults to a chat request; true when it answered.
func (s *Server) fault(w http.ResponseWriter, r *http.Request) bool {
	n := s.chats.Add(1)
	f := s.opts.Faults
	if f.TTFB > 0 {
		t := time.NewTimer(f.TTFB)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true
		}
	}
	if n > f.FailFirst {
		return false
	}
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	typ := "server_error"
	if status == http.StatusTooManyRequests {
		typ = "requests"
	}
	writeError(w, status, "Injected failure "+http.StatusText(status)+".", typ, "", "")
	return true
}
