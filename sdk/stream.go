package sdk

import (
	"bytes"
	"io"

	"github.com/llm-proxy/llm-proxy/sdk/sse"
)

// doneSentinel is the data of the event that ends an OpenAI-style stream.
var doneSentinel = []byte("[DONE]")

// streamBuf is reused across calls of a warm instance.
var streamBuf = make([]byte, 32<<10)

// ForwardSSE reads an upstream SSE body as it arrives and emits the data of
// each event as a chunk, until the body ends or an event's data is [DONE].
// transform, if not nil, may rewrite a chunk or drop it (by returning nil);
// the returned slice may alias its input. With transform nil each event
// costs one read at most and one emit: nothing is decoded.
func (c *Call) ForwardSSE(r *Response, transform func(data []byte) []byte) error {
	var p sse.Parser
	for {
		n, err := r.Read(streamBuf)
		if n > 0 {
			p.Feed(streamBuf[:n])
			for {
				ev, ok := p.Next()
				if !ok {
					break
				}
				if done, err := c.forwardEvent(ev.Data, transform); done || err != nil {
					return err
				}
			}
			if err := p.Err(); err != nil {
				return &HTTPError{Status: 502, Message: "upstream stream: " + err.Error()}
			}
		}
		if err == io.EOF {
			if ev, ok := p.Flush(); ok {
				_, err := c.forwardEvent(ev.Data, transform)
				return err
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (c *Call) forwardEvent(data []byte, transform func([]byte) []byte) (done bool, err error) {
	if bytes.Equal(data, doneSentinel) {
		return true, nil
	}
	if transform != nil {
		if data = transform(data); data == nil {
			return false, nil
		}
	}
	return false, c.EmitChunk(data)
}
