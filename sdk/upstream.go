package sdk

import (
	"strings"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// Request is an upstream HTTP request. The host decides whether the
// destination is allowed and adds the provider's credentials; Header must
// not carry them.
type Request struct {
	Method string
	URL    string
	Header [][2]string
	Body   []byte
}

// Handler receives the answer to one upstream request, in callbacks. A
// plugin sets the functions it needs and the SDK does the rest; each
// function gets the stream the request belongs to. For a successful (2xx)
// answer, the first match decides how its body is read:
//
//	Relay set   the host sends it to the client unchanged, without calling
//	            the plugin per event: for a chat_stream each event's data is
//	            a chunk (up to "[DONE]"); otherwise the body is the answer
//	Event set   read as Server-Sent Events (parsed by the host); Event gets
//	            the data of each one; an event "[DONE]" ends the body
//	otherwise   read whole; Body, if set, gets it
//
// Head, if set, runs first (to read a header, say). End runs once a 2xx body
// is complete; without End a chat_stream is finished (Stream.Finish), and
// another operation must have answered from Body.
//
// Any other status is an error: the body is read whole and given to Error,
// or without Error the stream fails with the upstream's status and body
// (Stream.FailUpstream). A request that fails (refused destination, timeout,
// broken connection) fails the stream with 502 or 504.
//
// An error returned by any of the functions fails the stream.
type Handler struct {
	Relay bool
	Head  func(s *Stream, r *Response) error
	Event func(s *Stream, data []byte) error
	Body  func(s *Stream, r *Response, body []byte) error
	End   func(s *Stream) error
	Error func(s *Stream, r *Response, body []byte) error
}

// Relay is the Handler that passes a successful answer through as it is.
var Relay = Handler{Relay: true}

// Response is the head of an upstream answer, valid in the Handler's
// functions.
type Response struct {
	StatusCode int
	s          *Stream
	handle     int32
}

// headerBuf receives header values; it is reused.
var headerBuf = make([]byte, 0, 256)

// Header returns the first value of a response header.
func (r *Response) Header(name string) (string, bool) {
	n := r.s.g.host.HTTPHeader(r.handle, []byte(name), headerBuf[:0:cap(headerBuf)])
	if n >= 0 && int(n) > cap(headerBuf) {
		headerBuf = make([]byte, 0, n)
		n = r.s.g.host.HTTPHeader(r.handle, []byte(name), headerBuf)
	}
	if n < 0 || int(n) > cap(headerBuf) {
		return "", false
	}
	return string(headerBuf[:n]), true
}

type upstream struct {
	s    *Stream
	h    Handler
	resp Response
	mode abi.BodyMode
	ok   bool // a 2xx status
	done bool // answered: End or Error ran, or the request failed
}

// headBuf holds the encoded request head; it is reused.
var headBuf = make([]byte, 0, 512)

// Send dispatches an upstream request and returns at once; h receives the
// answer in later callbacks. A stream may have several requests open
// (the host bounds how many).
func (s *Stream) Send(req Request, h Handler) error {
	if s.ended {
		return ErrEnded
	}
	for _, kv := range req.Header {
		if strings.ContainsAny(kv[0], "\r\n:") || strings.ContainsAny(kv[1], "\r\n") {
			return &StatusError{Op: "http_send", Status: abi.StatusInvalid}
		}
	}
	head := abi.AppendHead(headBuf[:0], req.Method, req.URL, req.Header)
	headBuf = head[:0]
	n := s.g.host.HTTPSend(s.id, head, req.Body)
	if n < 0 {
		return statusErr("http_send", n)
	}
	s.g.ups[n] = &upstream{s: s, h: h, resp: Response{s: s, handle: n}}
	s.handles = append(s.handles, n)
	return nil
}

// end runs the Handler's End, or its default.
func (u *upstream) end() error {
	if u.h.End != nil {
		return u.h.End(u.s)
	}
	if u.s.op.Streams() && !u.s.ended {
		return u.s.Finish()
	}
	return nil
}

// closeUpstream cancels a request whose answer is no longer wanted.
func (g *Guest) closeUpstream(u *upstream) {
	g.host.HTTPClose(u.resp.handle)
	g.forget(u)
}

func (g *Guest) forget(u *upstream) {
	delete(g.ups, u.resp.handle)
	hs := u.s.handles
	for i, h := range hs {
		if h == u.resp.handle {
			u.s.handles = append(hs[:i], hs[i+1:]...)
			break
		}
	}
}
