package server

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/hub"
)

// Timings of the live connection.
const (
	wsWriteTimeout = 10 * time.Second
	// wsPing keeps idle connections alive through proxies, and is when a
	// session-authenticated connection rechecks its session.
	wsPing = 25 * time.Second
)

// Events reach a dashboard in batches: every wsFlushEvery, at most about
// wsBatchBytes per message (the rest waits for the next tick).
const (
	wsFlushEvery = 100 * time.Millisecond
	wsBatchBytes = 256 << 10
)

// Close codes the page understands (4000-4999 are free for applications).
const (
	wsCloseSessionEnded = 4001 // sign in again
	wsCloseFellBehind   = 4002 // reconnect and reload
)

// wsCheck admits a WebSocket upgrade: requireAPI has authenticated the
// caller; a browser's Origin must be this server's own, so no other site
// can open the feed with the user's cookie.
func (s *Server) wsCheck(c *fiber.Ctx) error {
	if !websocket.IsWebSocketUpgrade(c) {
		return apierror.New(fiber.StatusUpgradeRequired, apierror.CodeWebSocketRequired,
			"GET /api/ws is a WebSocket endpoint; connect with a WebSocket client.")
	}
	if origin := c.Get(fiber.HeaderOrigin); origin != "" && !sameOrigin(origin, c.Hostname()) {
		return apierror.New(fiber.StatusForbidden, apierror.CodeOriginNotAllowed,
			"WebSocket connections must come from the dashboard's own origin, not "+origin+".")
	}
	return c.Next()
}

// sameOrigin reports whether an Origin header names host (host[:port], as
// the request's Host header gives it).
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, host)
}

// wsServe streams hub events to one dashboard until it leaves, falls
// behind, or its session ends.
func (s *Server) wsServe(conn *websocket.Conn) {
	p, _ := conn.Locals(principalLocal).(principal)
	token := conn.Cookies(SessionCookie)
	sub := s.opts.Hub.Subscribe()
	if sub == nil {
		msg := websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "too many dashboards connected")
		if s.opts.Hub.Stopped() {
			msg = websocket.FormatCloseMessage(websocket.CloseGoingAway, "server stopping")
		}
		conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		return
	}
	defer sub.Unsubscribe()

	// The page sends nothing; reading is how a close or a dead peer is
	// noticed.
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		conn.SetReadLimit(1 << 10)
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	closeWith := func(code int, text string) {
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
	}

	hello, _ := s.jsonEvent("hello", map[string]any{"role": p.role()})
	conn.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
	if conn.WriteMessage(websocket.TextMessage, hello) != nil {
		return
	}
	var batch []byte
	flush := time.NewTicker(wsFlushEvery)
	defer flush.Stop()
	ping := time.NewTicker(wsPing)
	defer ping.Stop()
	for {
		select {
		case <-gone:
			return
		case <-flush.C:
			// Everything queued since the last tick goes in one message,
			// one JSON object per line: a dashboard costs a write per tick,
			// not per event, and the hub's sends never wake this goroutine.
			batch = batch[:0]
			open := true
		drain:
			for len(batch) < wsBatchBytes {
				select {
				case b, ok := <-sub.C:
					if !ok {
						open = false
						break drain
					}
					if len(batch) > 0 {
						batch = append(batch, '\n')
					}
					batch = append(batch, b...)
				default:
					break drain
				}
			}
			if len(batch) > 0 {
				conn.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
				if conn.WriteMessage(websocket.TextMessage, batch) != nil {
					return
				}
			}
			if !open {
				if sub.WasCutOff() {
					closeWith(wsCloseFellBehind, "fell behind; reconnect")
				} else {
					closeWith(websocket.CloseGoingAway, "server stopping")
				}
				return
			}
		case <-ping.C:
			if p.session != nil {
				if _, err := s.opts.Sessions.Check(context.Background(), token); err != nil {
					closeWith(wsCloseSessionEnded, "session ended")
					return
				}
			}
			if conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsWriteTimeout)) != nil {
				return
			}
		}
	}
}

func (s *Server) jsonEvent(typ string, data any) ([]byte, error) {
	return json.Marshal(hub.Event{Type: typ, Time: time.Now().UTC(), Data: data})
}
