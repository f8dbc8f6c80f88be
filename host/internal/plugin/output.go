package plugin

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"
)

// guestOutput sends a plugin's stdout and stderr to the host log, a line at
// a time, tagged with the plugin, at most linesPerSecond lines per second
// (with a burst); lines over the rate are counted and reported once the
// rate allows again.
type guestOutput struct {
	log     *slog.Logger
	mu      sync.Mutex
	tokens  float64
	last    time.Time
	dropped int
}

const (
	linesPerSecond = 20
	lineBurst      = 50
	maxLine        = 4096
)

func newGuestOutput(l *slog.Logger) *guestOutput {
	return &guestOutput{log: l, tokens: lineBurst, last: time.Now()}
}

type outStream struct {
	g    *guestOutput
	name string
	mu   sync.Mutex
	buf  []byte
}

func (g *guestOutput) stream(name string) *outStream { return &outStream{g: g, name: name} }

func (s *outStream) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, b...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			if len(s.buf) > maxLine {
				s.g.line(s.name, s.buf[:maxLine])
				s.buf = s.buf[:0]
			}
			return len(b), nil
		}
		s.g.line(s.name, s.buf[:min(i, maxLine)])
		s.buf = s.buf[i+1:]
	}
}

// limit takes one line's worth of the rate; it reports whether the line
// may be logged and how many were dropped since the last one that was.
func (g *guestOutput) limit() (ok bool, dropped int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	g.tokens = min(lineBurst, g.tokens+now.Sub(g.last).Seconds()*linesPerSecond)
	g.last = now
	if g.tokens < 1 {
		g.dropped++
		return false, 0
	}
	g.tokens--
	dropped, g.dropped = g.dropped, 0
	return true, dropped
}

func (g *guestOutput) emit(level slog.Level, msg string, attrs ...any) {
	ok, dropped := g.limit()
	if !ok {
		return
	}
	if dropped > 0 {
		g.log.Warn("plugin output rate-limited", "dropped_lines", dropped)
	}
	g.log.Log(context.Background(), level, msg, attrs...)
}

func (g *guestOutput) line(stream string, b []byte) {
	g.emit(slog.LevelInfo, "plugin output", "stream", stream, "line", string(b))
}

// logGuest writes a line the plugin sent through the log host function,
// under the same rate limit as its stdout and stderr.
func (g *guestOutput) logGuest(level int32, msg []byte) {
	g.emit(slog.Level(level), "plugin log", "message", string(msg[:min(len(msg), maxLine)]))
}
