package sdk

import (
	"bytes"
	"io"
)

// doneSentinel is the data of the event that ends an OpenAI-style stream.
var doneSentinel = []byte("[DONE]")

// eventBuf is reused across calls of a warm instance.
var eventBuf = make([]byte, 0, 16<<10)

// NextEvent returns the data of the next Server-Sent Event of the body,
// waiting only until one complete event has arrived, or io.EOF at the end.
// The host parses the stream natively (LF, CRLF and CR line ends, events
// split across reads, multi-line data joined with LF, a last event without
// a blank line); the slice is valid until the next call. A response is read
// either with NextEvent or with Read, not both.
func (r *Response) NextEvent() ([]byte, error) {
	for {
		n := r.call.host.HTTPReadEvent(r.handle, eventBuf[:0:cap(eventBuf)])
		switch {
		case n == 0:
			return nil, io.EOF
		case n < 0:
			return nil, statusErr("http_read_event", n)
		case int(n) > cap(eventBuf):
			eventBuf = make([]byte, 0, n) // the host keeps the event for the retry
			continue
		}
		return eventBuf[:n], nil
	}
}

// ForwardSSE emits the data of each upstream event as a chunk as soon as
// it arrives, until the body ends or an event's data is [DONE]. transform,
// if not nil, may rewrite a chunk or drop it (by returning nil); the
// returned slice may alias its input. With transform nil nothing is decoded
// in the guest: each event costs one host call to read it and one to emit.
func (c *Call) ForwardSSE(r *Response, transform func(data []byte) []byte) error {
	for {
		data, err := r.NextEvent()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if bytes.Equal(data, doneSentinel) {
			return nil
		}
		if transform != nil {
			if data = transform(data); data == nil {
				continue
			}
		}
		if err := c.EmitChunk(data); err != nil {
			return err
		}
	}
}
