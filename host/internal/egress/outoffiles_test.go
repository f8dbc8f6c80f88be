//go:build unix

package egress

import (
	"net"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/fdtest"
)

// TestOutOfFilesSeen: a dial that finds no file descriptor is recognised
// whether the socket or, for a host name, the DNS query before it failed
// (the resolver keeps only that error's text).
func TestOutOfFilesSeen(t *testing.T) {
	fdtest.TakeAll(t)
	d := &net.Dialer{Timeout: 5 * time.Second}
	for _, addr := range []string{"127.0.0.1:9", "api.example.com:443"} {
		_, err := d.DialContext(t.Context(), "tcp", addr)
		if err == nil {
			t.Fatalf("%s: dial succeeded with no file descriptor left", addr)
		}
		if !outOfFiles(err) {
			t.Errorf("%s: %v not seen as out of file descriptors", addr, err)
		}
	}
}
