// Package hub fans live events out to connected dashboards.
//
// Publishers (the request path, the plugin registry, the key registry)
// call [Hub.Publish], which never blocks: with no dashboard connected it
// returns after one atomic load; otherwise it puts the event in a bounded
// inbox, and if that inbox is full the event is dropped and counted. The
// hub's goroutine empties the inbox every Options.FlushEvery (50 ms), not
// on every event: waking a sleeping goroutine costs the waker a few
// microseconds, and on the request path that is the whole budget. It
// encodes each event to JSON once and offers the bytes to every
// subscriber's bounded queue; subscribers drain their queues on their own
// timer for the same reason (see the server's /api/ws). A subscriber
// whose queue is full has fallen behind: it is cut off (its queue is
// closed, and the counter of dropped subscribers goes up) rather than
// being waited for, so one slow or dead browser costs neither the hub nor
// the requests anything. A dashboard that was cut off reconnects and
// catches up from GET /api/logs.
package hub

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Event types.
const (
	RequestStarted  = "request.started"
	RequestFinished = "request.finished"
	PluginLoaded    = "plugin.loaded"
	PluginReloaded  = "plugin.reloaded"
	PluginFailed    = "plugin.failed"
	PluginRemoved   = "plugin.removed"
	KeyCreated      = "key.created"
	KeyRevoked      = "key.revoked"
	KeyRotated      = "key.rotated"
	KeyUpdated      = "key.updated"
	// BreakerChanged: a target's circuit breaker opened, went half-open
	// or closed; the data is a router.TargetHealth.
	BreakerChanged = "breaker.changed"
	// Dropped is the one event a subscriber gets about itself: sent just
	// before the hub cuts it off, when there is room for it.
	Dropped = "hub.dropped"
)

// Event is one message as a dashboard receives it.
type Event struct {
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	// Data is encoded by the hub's goroutine, after Publish returns, so the
	// publisher must not change it afterwards.
	Data any `json:"data,omitempty"`
}

// Options configure a Hub; zero values take the defaults given.
type Options struct {
	Inbox       int // events waiting for the hub goroutine; default 8192
	ClientQueue int // events waiting for one subscriber; default 2048
	// FlushEvery is how often the hub goroutine empties the inbox;
	// default 50 ms.
	FlushEvery time.Duration
	// MaxSubscribers bounds the dashboards connected at once: each holds a
	// queue of up to ClientQueue events. Default 256.
	MaxSubscribers int
	Logger         *slog.Logger
}

// Stats are the hub's counters since it started.
type Stats struct {
	Subscribers int    `json:"subscribers"`
	Published   uint64 `json:"published"`    // events accepted by Publish
	Delivered   uint64 `json:"delivered"`    // event copies queued to subscribers
	DroppedIn   uint64 `json:"dropped_in"`   // events refused because the inbox was full
	CutOff      uint64 `json:"cut_off"`      // subscribers dropped for falling behind
	Subscribed  uint64 `json:"subscribed"`   // subscriptions ever made
	Unsubscribe uint64 `json:"unsubscribed"` // subscriptions ended by their owner
	Refused     uint64 `json:"refused"`      // subscriptions refused at MaxSubscribers
}

// Hub is the broadcaster. The zero value is not usable; call New and Run.
type Hub struct {
	o     Options
	log   *slog.Logger
	in    chan Event
	subs  chan subscribeReq
	unsub chan *Subscriber

	active atomic.Int64 // subscribers, read by Publish's fast path

	published, delivered, droppedIn, cutOff, subscribed, unsubscribed, refused atomic.Uint64

	stopOnce sync.Once
	done     chan struct{}
}

// Subscriber is one connected dashboard.
type Subscriber struct {
	// C delivers encoded events. It is closed when the subscriber is cut
	// off for falling behind, or after Unsubscribe, or when the hub stops.
	C    <-chan []byte
	c    chan []byte
	hub  *Hub
	once sync.Once
	// CutOff is true when the hub dropped this subscriber for being slow;
	// read it after C is closed.
	cutOff atomic.Bool
}

// New makes a hub; start it with Run.
func New(o Options) *Hub {
	if o.Inbox <= 0 {
		o.Inbox = 8192
	}
	if o.ClientQueue <= 0 {
		o.ClientQueue = 2048
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = 50 * time.Millisecond
	}
	if o.MaxSubscribers <= 0 {
		o.MaxSubscribers = 256
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Hub{
		o: o, log: o.Logger,
		in:    make(chan Event, o.Inbox),
		subs:  make(chan subscribeReq),
		unsub: make(chan *Subscriber),
		done:  make(chan struct{}),
	}
}

// Active reports whether any dashboard is listening; publishers whose
// event costs something to build check it first.
func (h *Hub) Active() bool { return h != nil && h.active.Load() > 0 }

// Publish offers an event to every subscriber. It never blocks.
func (h *Hub) Publish(typ string, data any) {
	if h == nil || h.active.Load() == 0 {
		return
	}
	select {
	case h.in <- Event{Type: typ, Time: time.Now().UTC(), Data: data}:
		h.published.Add(1)
	default:
		h.droppedIn.Add(1)
	}
}

// subscribeReq asks the hub's goroutine to admit s; it answers on ok.
type subscribeReq struct {
	s  *Subscriber
	ok chan bool
}

// Subscribe adds a subscriber. It returns nil once the hub has stopped
// (Stopped is then true) or while MaxSubscribers are connected.
func (h *Hub) Subscribe() *Subscriber {
	c := make(chan []byte, h.o.ClientQueue)
	s := &Subscriber{C: c, c: c, hub: h}
	req := subscribeReq{s: s, ok: make(chan bool, 1)}
	select {
	case h.subs <- req:
		if <-req.ok {
			return s
		}
		return nil
	case <-h.done:
		return nil
	}
}

// Stopped reports whether the hub has stopped.
func (h *Hub) Stopped() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// Unsubscribe ends s; C is closed. Calling it again, or after s was cut
// off, does nothing.
func (s *Subscriber) Unsubscribe() {
	s.once.Do(func() {
		select {
		case s.hub.unsub <- s:
		case <-s.hub.done:
		}
	})
}

// WasCutOff reports whether the hub dropped s for falling behind.
func (s *Subscriber) WasCutOff() bool { return s.cutOff.Load() }

// Stats returns the counters.
func (h *Hub) Stats() Stats {
	return Stats{
		Subscribers: int(h.active.Load()),
		Published:   h.published.Load(), Delivered: h.delivered.Load(),
		DroppedIn: h.droppedIn.Load(), CutOff: h.cutOff.Load(),
		Subscribed: h.subscribed.Load(), Unsubscribe: h.unsubscribed.Load(),
		Refused: h.refused.Load(),
	}
}

// Run serves until ctx ends, then closes every subscriber.
func (h *Hub) Run(ctx context.Context) {
	subs := map[*Subscriber]struct{}{}
	tick := time.NewTicker(h.o.FlushEvery)
	defer tick.Stop()
	defer func() {
		h.stopOnce.Do(func() { close(h.done) })
		for s := range subs {
			close(s.c)
		}
		h.active.Store(0)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-h.subs:
			if len(subs) >= h.o.MaxSubscribers {
				h.refused.Add(1)
				req.ok <- false
				continue
			}
			subs[req.s] = struct{}{}
			h.subscribed.Add(1)
			h.active.Store(int64(len(subs)))
			req.ok <- true
		case s := <-h.unsub:
			if _, ok := subs[s]; ok {
				delete(subs, s)
				close(s.c)
				h.unsubscribed.Add(1)
				h.active.Store(int64(len(subs)))
			}
		case <-tick.C:
			for n := len(h.in); n > 0; n-- {
				h.fanOut(<-h.in, subs)
			}
			h.active.Store(int64(len(subs)))
		}
	}
}

// fanOut encodes ev and queues it for every subscriber, cutting off those
// whose queue is full.
func (h *Hub) fanOut(ev Event, subs map[*Subscriber]struct{}) {
	b, err := json.Marshal(ev)
	if err != nil {
		h.log.Error("hub: event not encodable", "type", ev.Type, "err", err)
		return
	}
	for s := range subs {
		select {
		case s.c <- b:
			h.delivered.Add(1)
		default:
			h.cut(s)
			delete(subs, s)
		}
	}
}

// cut drops a subscriber that fell behind. Its queue is full, so the
// notice replaces the oldest queued event.
func (h *Hub) cut(s *Subscriber) {
	s.cutOff.Store(true)
	h.cutOff.Add(1)
	select {
	case <-s.c:
	default:
	}
	notice, _ := json.Marshal(Event{Type: Dropped, Time: time.Now().UTC(),
		Data: map[string]string{"reason": "this dashboard fell behind the live events; reconnect and reload from /api/logs"}})
	select {
	case s.c <- notice:
	default:
	}
	close(s.c)
	h.log.Warn("hub: a dashboard fell behind and was disconnected", "cut_off_total", h.cutOff.Load())
}
