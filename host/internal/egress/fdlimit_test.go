//go:build unix

package egress_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/egress"
	"github.com/llm-proxy/llm-proxy/host/internal/fdtest"
)

// TestDialWhenOutOfFileDescriptors: with every file descriptor of the
// process taken, a new upstream request still goes out, on a descriptor
// that an idle pooled connection gave up.
func TestDialWhenOutOfFileDescriptors(t *testing.T) {
	const idle = 8
	var inFlight sync.WaitGroup
	inFlight.Add(idle)
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight.Done()
		inFlight.Wait() // all at once, so each holds its own connection
		io.WriteString(w, "a")
	}))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") }))
	defer b.Close()
	client := func(base string) *egress.Client {
		c, err := egress.New(egress.Options{BaseURL: base, AllowPrivateNetwork: true, Auth: egress.Auth{Type: "none"}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	get := func(c *egress.Client, url string) (string, error) {
		req, _ := http.NewRequest("GET", url, nil)
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), err
	}
	ca, cb := client(a.URL), client(b.URL)
	var wg sync.WaitGroup
	for range idle {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := get(ca, a.URL); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait() // idle connections to a are pooled now

	fdtest.TakeAll(t)
	if got, err := get(cb, b.URL); err != nil || got != "b" {
		t.Fatalf("request with no file descriptor left: %q, %v", got, err)
	}
}
