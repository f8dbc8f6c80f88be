package server

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/tidwall/gjson"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/ingress"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/sdk/sse"
)

// The two plugin.Sinks of /v1: bufferSink keeps a non-streamed answer for
// the handler; streamSink frames a stream's chunks into a buffer that one
// writer goroutine per client sends. Neither blocks the plugin: a slow
// client costs its own buffer, bounded by the plugin runtime's backpressure
// (it stops reading the upstream while StreamBufferBytes wait here).

// bufferSink keeps a non-streamed answer.
type bufferSink struct {
	body, usage []byte
	err         error
	done        chan struct{}
}

func newBufferSink() *bufferSink { return &bufferSink{done: make(chan struct{})} }

func (b *bufferSink) Chunk([]byte) bool        { return false }
func (b *bufferSink) Body(d []byte)            { b.body = append(make([]byte, 0, len(d)), d...) }
func (b *bufferSink) Usage(d []byte)           { b.usage = append(b.usage[:0], d...) }
func (b *bufferSink) Backlog() int             { return 0 }
func (b *bufferSink) Drained() <-chan struct{} { return nil }
func (b *bufferSink) End(err error) {
	b.err = err
	close(b.done)
}

// outcome is the answer's error for the client, if any.
func (b *bufferSink) outcome() *apierror.Error {
	if err := endError(b.err); err != nil {
		return err
	}
	if b.body == nil {
		return errNoResponse()
	}
	return nil
}

func errNoResponse() *apierror.Error {
	return apierror.New(fiber.StatusBadGateway, apierror.CodePluginNoResponse, "The provider plugin returned no response.")
}

// endError turns how a plugin stream ended into the client's error; nil for
// a normal end.
func endError(err error) *apierror.Error {
	var f *plugin.Failure
	switch {
	case err == nil:
		return nil
	case errors.As(err, &f):
		return apierror.FromPlugin(f.Status, f.Body, f.RetryAfter)
	case errors.Is(err, plugin.ErrTimeout):
		return apierror.New(fiber.StatusGatewayTimeout, apierror.CodePluginTimeout, "The provider did not finish within the request deadline.")
	case errors.Is(err, plugin.ErrOutputLimit):
		return apierror.New(fiber.StatusBadGateway, apierror.CodePluginOutputLimit, "The provider plugin exceeded its output limit.")
	case errors.Is(err, plugin.ErrUpstreamNotJSON):
		return apierror.New(fiber.StatusBadGateway, apierror.CodeUpstreamInvalidResponse, "The provider answered with a body that is not JSON.")
	case errors.Is(err, plugin.ErrNoResponse):
		return errNoResponse()
	case errors.Is(err, plugin.ErrClientGone):
		return apierror.New(499, apierror.CodeClientClosedRequest, "The client closed the request.")
	}
	return apierror.New(fiber.StatusBadGateway, apierror.CodePluginFailed, "The provider plugin failed while handling the request.")
}

// streamSink collects a stream's events for its client.
type streamSink struct {
	r   *request
	enc encoder // nil: chat chunks, framed as they are

	mu      sync.Mutex
	buf     []byte // framed events not yet taken by the writer
	spare   []byte // the writer's last buffer, for reuse
	first   bool   // an event was queued: the response is a 200 stream
	ended   bool
	err     error
	usage   []byte
	gone    bool          // the client is gone: refuse more
	drained chan struct{} // closed and replaced whenever the writer takes buf

	decided chan struct{} // closed at the first event or the end, whichever comes first
	wake    chan struct{} // tells the writer there is something to do
}

func newStreamSink(r *request) *streamSink {
	return &streamSink{r: r, enc: encoderFor(r), drained: make(chan struct{}), decided: make(chan struct{}), wake: make(chan struct{}, 1)}
}

// usageKey finds a "usage" member whose value is an object; most chunks
// have none or "usage":null, so this is a byte search before any parsing.
var usageKey = []byte(`"usage"`)

func hasUsageObject(d []byte) bool {
	i := bytes.Index(d, usageKey)
	if i < 0 {
		return false
	}
	rest := bytes.TrimLeft(d[i+len(usageKey):], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return true // not a plain member: let the parser decide
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	return len(rest) > 0 && rest[0] == '{'
}

func (s *streamSink) Chunk(d []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone || s.ended {
		return false
	}
	n := len(s.buf)
	if s.enc != nil {
		s.buf = s.enc.Chunk(s.buf, d)
	} else if s.chatChunk(d) {
		return true
	}
	if s.r.bodies != nil {
		s.r.bodies.appendResponse(s.buf[n:])
	}
	if !s.first {
		s.first = true
		s.r.ttfb = time.Since(s.r.start)
		close(s.decided)
	}
	s.signal()
	return true
}

// chatChunk queues a chat chunk and keeps its usage; it reports true for
// the usage-only chunk the proxy asked for on the client's behalf, which
// is not sent.
func (s *streamSink) chatChunk(d []byte) bool {
	if hasUsageObject(d) {
		if u := gjson.GetBytes(d, "usage"); u.IsObject() {
			s.usage = append(s.usage[:0], u.Raw...)
			// The usage-only chunk the proxy asked for on the client's behalf.
			if !s.r.includeUsage {
				if ch := gjson.GetBytes(d, "choices"); ch.IsArray() && len(ch.Array()) == 0 {
					return true
				}
			}
		}
	}
	s.buf = sse.AppendData(s.buf, d)
	return false
}

func (s *streamSink) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *streamSink) Body([]byte) {}

func (s *streamSink) Usage(d []byte) {
	s.mu.Lock()
	s.usage = append(s.usage[:0], d...)
	s.mu.Unlock()
}

func (s *streamSink) End(err error) {
	s.mu.Lock()
	s.ended, s.err = true, err
	if !s.first {
		close(s.decided)
	}
	s.mu.Unlock()
	s.signal()
}

func (s *streamSink) Backlog() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buf)
}

func (s *streamSink) Drained() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drained
}

// started reports whether the response is a stream (an event came before
// the end); if not, the end's error is the answer.
func (s *streamSink) started() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first, s.err
}

// take hands the writer what is queued, and whether the stream ended.
func (s *streamSink) take() (data []byte, ended bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data = s.buf
	s.buf = s.spare[:0]
	s.spare = nil
	if len(data) > 0 {
		close(s.drained)
		s.drained = make(chan struct{})
	}
	return data, s.ended, s.err
}

// giveBack returns a written buffer for reuse.
func (s *streamSink) giveBack(b []byte) {
	s.mu.Lock()
	if cap(b) <= 64<<10 {
		s.spare = b[:0]
	}
	s.mu.Unlock()
}

func (s *streamSink) clientGone() {
	s.mu.Lock()
	s.gone = true
	s.mu.Unlock()
}

var doneEvent = []byte("data: [DONE]\n\n")

// writeStream sends a started stream to the client: it runs on the
// goroutine fasthttp gives the response body, writes whatever is queued,
// flushes, and waits for more. A flush that does not complete within
// writeTimeout (the client reads nothing while its socket buffers are
// full) closes the connection, which fails the write; a failed write
// cancels the plugin stream and its upstream. At the end it writes the
// closing [DONE], or an error event and [DONE] when the stream failed after
// it started, and logs the request.
func (s *Server) writeStream(w *bufio.Writer, conn net.Conn, sink *streamSink, st *plugin.Stream, r *request) {
	var watchdog *time.Timer
	defer func() {
		if watchdog != nil {
			watchdog.Stop()
		}
	}()
	flush := func(b []byte) bool {
		if s.writeTimeout > 0 && conn != nil {
			if watchdog == nil {
				watchdog = time.AfterFunc(s.writeTimeout, func() { conn.Close() })
			} else {
				watchdog.Reset(s.writeTimeout)
			}
		}
		_, err := w.Write(b)
		if err == nil {
			err = w.Flush()
		}
		if watchdog != nil {
			watchdog.Stop()
		}
		return err == nil
	}
	ok := true
	for {
		data, ended, err := sink.take()
		if len(data) > 0 {
			ok = flush(data)
			sink.giveBack(data)
			if !ok {
				sink.clientGone()
				st.Cancel()
				break
			}
		}
		if ended {
			// Nothing is queued after the end: what came before it was
			// taken with it.
			status := fiber.StatusOK
			apiErr := endError(err)
			switch {
			case errors.Is(err, plugin.ErrClientGone):
				status = 499
			case apiErr != nil && sink.enc != nil:
				status = apiErr.Status
				tail := sink.enc.Fail(nil, apiErr.Status, string(cmp.Or(apiErr.Code, apierror.Code(apiErr.Type))), apiErr.Message)
				if flush(tail) {
					r.bodies.appendResponse(tail)
				}
			case apiErr != nil:
				status = apiErr.Status
				tail := sse.AppendData(nil, apiErr.JSON())
				if flush(tail) && flush(doneEvent) {
					tail = append(tail, doneEvent...)
				}
				r.bodies.appendResponse(tail)
			case sink.enc != nil:
				tail := sink.enc.End(nil)
				if rs, ok := sink.enc.(*ingress.ResponsesStream); ok {
					s.keepResponse(r, rs.Final(), rs.AssistantMessage())
				}
				if flush(tail) {
					r.bodies.appendResponse(tail)
				}
			default:
				if flush(doneEvent) {
					r.bodies.appendResponse(doneEvent)
				}
			}
			s.endStream(sink, r, status, apiErr)
			return
		}
		<-sink.wake
	}
	// The client is gone; wait for the plugin stream's end (Cancel makes it
	// come at once) so the log sees its usage.
	for {
		if _, ended, _ := sink.take(); ended {
			break
		}
		<-sink.wake
	}
	s.endStream(sink, r, 499, endError(plugin.ErrClientGone))
}

func (s *Server) endStream(sink *streamSink, r *request, status int, apiErr *apierror.Error) {
	sink.mu.Lock()
	usage := sink.usage
	if sink.enc != nil {
		r.usage.setFrom(sink.enc.Usage())
	}
	sink.mu.Unlock()
	if usage != nil && !r.usage.known {
		r.usage.set(usage)
	}
	s.logRequest(r, status, apiErr)
}
