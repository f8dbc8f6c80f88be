package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"
)

func start(t testing.TB, o Options) (*Hub, context.CancelFunc) {
	if o.FlushEvery == 0 {
		o.FlushEvery = time.Millisecond
	}
	h := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return h, cancel
}

func recv(t *testing.T, s *Subscriber) Event {
	t.Helper()
	select {
	case b, ok := <-s.C:
		if !ok {
			t.Fatal("channel closed")
		}
		var e struct {
			Type string          `json:"type"`
			Time time.Time       `json:"time"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		return Event{Type: e.Type, Time: e.Time, Data: string(e.Data)}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return Event{}
}

func waitSubscribers(t *testing.T, h *Hub, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); h.Stats().Subscribers != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers, want %d", h.Stats().Subscribers, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPublishWithoutSubscribersDoesNothing(t *testing.T) {
	h, _ := start(t, Options{})
	h.Publish(KeyCreated, map[string]string{"id": "k"})
	if st := h.Stats(); st.Published != 0 || st.DroppedIn != 0 {
		t.Fatalf("%+v", st)
	}
	var nilHub *Hub
	nilHub.Publish(KeyCreated, nil) // a proxy without a hub
}

func TestFanOutInOrder(t *testing.T) {
	h, _ := start(t, Options{})
	a, b := h.Subscribe(), h.Subscribe()
	waitSubscribers(t, h, 2)
	for i := 0; i < 10; i++ {
		h.Publish(RequestFinished, map[string]int{"n": i})
	}
	for _, s := range []*Subscriber{a, b} {
		for i := 0; i < 10; i++ {
			e := recv(t, s)
			if e.Type != RequestFinished || e.Data != fmt.Sprintf(`{"n":%d}`, i) || time.Since(e.Time) > time.Minute {
				t.Fatalf("event %d: %+v", i, e)
			}
		}
	}
	a.Unsubscribe()
	a.Unsubscribe() // twice is fine
	if _, ok := <-a.C; ok {
		t.Fatal("open after Unsubscribe")
	}
	waitSubscribers(t, h, 1)
	if st := h.Stats(); st.Delivered != 20 || st.Published != 10 || st.Unsubscribe != 1 || st.CutOff != 0 {
		t.Fatalf("%+v", st)
	}
}

func TestSlowSubscriberIsCutOff(t *testing.T) {
	h, _ := start(t, Options{ClientQueue: 8})
	slow, fast := h.Subscribe(), h.Subscribe()
	waitSubscribers(t, h, 2)
	// The fast one reads each event before the next is published, so
	// only the slow one ever has a backlog.
	for i := 0; i < 100; i++ {
		h.Publish(RequestStarted, i)
		if e := recv(t, fast); e.Data != fmt.Sprint(i) {
			t.Fatalf("fast subscriber, event %d: %+v", i, e)
		}
	}
	// The slow one holds what fit, then the notice, then a closed channel.
	var last []byte
	n := 0
	for b := range slow.C {
		last = b
		n++
	}
	var e Event
	json.Unmarshal(last, &e)
	if !slow.WasCutOff() || e.Type != Dropped || n > 8 {
		t.Fatalf("cut off %v, %d events, last %s", slow.WasCutOff(), n, last)
	}
	if st := h.Stats(); st.CutOff != 1 || st.Subscribers != 1 {
		t.Fatalf("%+v", st)
	}
	slow.Unsubscribe() // after a cut-off: nothing happens
}

func TestFullInboxDropsWithoutBlocking(t *testing.T) {
	h := New(Options{Inbox: 4}) // not running: nothing drains the inbox
	h.active.Store(1)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 100; i++ {
			h.Publish(RequestStarted, i)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked")
	}
	if st := h.Stats(); st.Published != 4 || st.DroppedIn != 96 {
		t.Fatalf("%+v", st)
	}
}

func TestStopClosesSubscribers(t *testing.T) {
	h, cancel := start(t, Options{})
	s := h.Subscribe()
	waitSubscribers(t, h, 1)
	cancel()
	if _, ok := <-s.C; ok {
		t.Fatal("open after stop")
	}
	<-h.done
	if h.Subscribe() != nil {
		t.Fatal("subscribed to a stopped hub")
	}
	s.Unsubscribe()
}

// BenchmarkFanOut100 publishes to 100 subscribers that read as fast as
// they can. ns/op is the publisher's cost per event; the hub's goroutine
// does the encoding and the 100 queue sends.
func BenchmarkFanOut100(b *testing.B) {
	h, _ := start(b, Options{Inbox: 1 << 16, ClientQueue: 1 << 12})
	var wg sync.WaitGroup
	var subs []*Subscriber
	for i := 0; i < 100; i++ {
		s := h.Subscribe()
		subs = append(subs, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range s.C {
			}
		}()
	}
	type row struct {
		ID     string `json:"id"`
		Model  string `json:"model"`
		Status int    `json:"status"`
		Tokens int    `json:"tokens"`
	}
	ev := row{ID: "req_0193a1b2c3d4e5f6a7b8", Model: "gpt-4o-mini", Status: 200, Tokens: 123}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.Publish(RequestFinished, ev)
	}
	b.StopTimer()
	for h.Stats().Delivered+100*h.Stats().DroppedIn < uint64(100*b.N) && h.Stats().CutOff == 0 {
		time.Sleep(time.Millisecond)
	}
	st := h.Stats()
	b.ReportMetric(float64(st.DroppedIn), "dropped")
	b.ReportMetric(float64(st.CutOff), "cut_off")
	for _, s := range subs {
		s.Unsubscribe()
	}
	wg.Wait()
}

// BenchmarkPublishNoSubscribers is the cost on the request path when no
// dashboard is open.
func BenchmarkPublishNoSubscribers(b *testing.B) {
	h, _ := start(b, Options{})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		h.Publish(RequestStarted, nil)
	}
}
