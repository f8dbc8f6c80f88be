package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

type wsEvent struct {
	Type string          `json:"type"`
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"`
}

func dialEvents(t *testing.T, p *proxy, h http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	url := "ws" + strings.TrimPrefix(p.URL, "http") + "/api/ws"
	c, resp, err := websocket.DefaultDialer.Dial(url, h)
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, resp, err
}

// pending holds the events of a message not yet looked at, per connection.
var pending = map[*websocket.Conn][]wsEvent{}

// next reads events until one of type typ arrives or the deadline passes.
// A message holds one or more events, one JSON object per line; the events
// after the one returned are kept for the next call.
func next(t *testing.T, c *websocket.Conn, typ string, within time.Duration) wsEvent {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	for {
		for len(pending[c]) > 0 {
			e := pending[c][0]
			pending[c] = pending[c][1:]
			if e.Type == typ {
				return e
			}
		}
		_, msg, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		for _, line := range strings.Split(string(msg), "\n") {
			var e wsEvent
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("event %q: %v", line, err)
			}
			pending[c] = append(pending[c], e)
		}
	}
}

func TestLiveEvents(t *testing.T) {
	p := startProxy(t, nil)
	admin := http.Header{"Authorization": {"Bearer " + adminKey}}

	t.Run("refused", func(t *testing.T) {
		for name, tc := range map[string]struct {
			h    http.Header
			want int
		}{
			"no credentials": {http.Header{}, 401},
			"client key":     {http.Header{"Authorization": {"Bearer sk-lp-nope"}}, 401},
			"foreign origin": {http.Header{"Authorization": {"Bearer " + adminKey}, "Origin": {"https://evil.example"}}, 403},
		} {
			_, resp, err := dialEvents(t, p, tc.h)
			if err == nil || resp == nil || resp.StatusCode != tc.want {
				t.Errorf("%s: %v %v", name, resp, err)
			}
		}
		// A plain GET is told to use a WebSocket.
		req, _ := http.NewRequest("GET", p.URL+"/api/ws", nil)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 426 {
			t.Errorf("plain GET: %d", resp.StatusCode)
		}
	})

	t.Run("requests and keys", func(t *testing.T) {
		h := admin.Clone()
		h.Set("Origin", p.URL) // what a browser on the dashboard sends
		c, _, err := dialEvents(t, p, h)
		if err != nil {
			t.Fatal(err)
		}
		if e := next(t, c, "hello", 5*time.Second); !strings.Contains(string(e.Data), `"role":"admin"`) {
			t.Fatalf("hello: %s", e.Data)
		}
		sent := time.Now()
		var resp *http.Response
		_, err = p.client(adminKey).Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model:    "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
		}, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		id := resp.Header.Get("X-Request-Id")
		started := next(t, c, "request.started", 5*time.Second)
		if !strings.Contains(string(started.Data), id) || !strings.Contains(string(started.Data), `"model":"gpt-4o-mini"`) {
			t.Fatalf("started: %s", started.Data)
		}
		finished := next(t, c, "request.finished", 5*time.Second)
		var row struct {
			ID               string `json:"id"`
			Status           int    `json:"status"`
			Provider         string `json:"provider"`
			CompletionTokens int64  `json:"completion_tokens"`
		}
		json.Unmarshal(finished.Data, &row)
		if row.ID != id || row.Status != 200 || row.Provider != "fake" || row.CompletionTokens == 0 {
			t.Fatalf("finished: %s", finished.Data)
		}
		// The bound is one second from the request to the live view;
		// the race detector slows everything, so it is only checked without.
		if took := time.Since(sent); !raceEnabled && took > time.Second {
			t.Errorf("the request reached the live view after %v", took)
		}

		k := createKey(t, p, `{"name":"live"}`)
		e := next(t, c, "key.created", 5*time.Second)
		if !strings.Contains(string(e.Data), `"name":"live"`) || strings.Contains(string(e.Data), k.Key) {
			t.Fatalf("key.created: %s", e.Data)
		}
		if status, body := adminCall(t, p, "DELETE", "/api/keys/"+k.ID, ""); status != 200 {
			t.Fatalf("revoke: %d %s", status, body)
		}
		next(t, c, "key.revoked", 5*time.Second)
	})
}

func TestInFlightGauge(t *testing.T) {
	p := startProxyWith(t, nil, fakeupstream.Options{APIKey: upstreamKey, ChunkDelay: 50 * time.Millisecond, Chunks: 10})
	inFlight := func() int {
		t.Helper()
		status, body := adminCall(t, p, "GET", "/api/stats", "")
		var st struct {
			InFlight *int `json:"in_flight"`
		}
		if status != 200 || json.Unmarshal(body, &st) != nil || st.InFlight == nil {
			t.Fatalf("stats: %d %s", status, body)
		}
		return *st.InFlight
	}
	if n := inFlight(); n != 0 {
		t.Fatalf("idle: %d in flight", n)
	}
	stream := p.client(adminKey).Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("count slowly")},
	})
	if !stream.Next() {
		t.Fatal(stream.Err())
	}
	if n := inFlight(); n != 1 {
		t.Fatalf("during a stream: %d in flight", n)
	}
	for stream.Next() {
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return inFlight() == 0 })
}

// TestDashboardConnectionsCapped: one admin session cannot open live
// connections without bound; past the hub's 256 the next is closed with
// 1013 (try again later), and one closing makes room again.
func TestDashboardConnectionsCapped(t *testing.T) {
	p := startProxy(t, nil)
	h := http.Header{"Authorization": {"Bearer " + adminKey}}
	conns := make([]*websocket.Conn, 0, 256)
	for i := 0; i < 256; i++ {
		c, _, err := dialEvents(t, p, h)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	waitFor(t, func() bool { return p.App.Hub().Stats().Subscribers == 256 })
	over, _, err := dialEvents(t, p, h)
	if err != nil {
		t.Fatal(err)
	}
	over.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err = over.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseTryAgainLater) {
		t.Fatalf("the 257th connection: %v", err)
	}
	conns[0].Close()
	waitFor(t, func() bool { return p.App.Hub().Stats().Subscribers == 255 })
	again, _, err := dialEvents(t, p, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chatText(t, p, "gpt-4o-mini", "hello"); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, again, "request.finished", 10*time.Second); ev.Type != "request.finished" {
		t.Fatalf("after room was made: %+v", ev)
	}
}
