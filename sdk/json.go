package sdk

import (
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// ParseJSON checks that data holds one JSON value and returns it as a
// rawjson.Doc, whose tape the host builds natively (json_tape, ABI 1.1):
// walking a Doc costs the guest a few steps per value instead of a step per
// byte. tape is reused when it is large enough; keep it (doc.Tape) for the
// next call to parse without allocating. Malformed input gives
// rawjson.ErrSyntax.
//
// A plugin that calls ParseJSON imports json_tape and must declare
// "abi": "1.1" (or later) in its manifest.
func (c *Call) ParseJSON(data []byte, tape []uint32) (rawjson.Doc, error) {
	for {
		n := c.host.JSONTape(data, tape[:0:cap(tape)])
		switch {
		case n == int32(abi.StatusMalformed) || n == 0:
			return rawjson.Doc{Data: data, Tape: tape[:0]}, rawjson.ErrSyntax
		case n < 0:
			return rawjson.Doc{Data: data, Tape: tape[:0]}, statusErr("json_tape", n)
		case int(n)*rawjson.EntryWords > cap(tape):
			tape = make([]uint32, 0, int(n)*rawjson.EntryWords+int(n)) // room to grow
			continue
		}
		return rawjson.Doc{Data: data, Tape: tape[:int(n)*rawjson.EntryWords]}, nil
	}
}

// ReadJSON reads the whole body of an upstream response, at most max
// bytes, and indexes it like ParseJSON, reusing tape (keep doc.Tape for the
// next call). A body that is not one JSON value gives rawjson.ErrSyntax; a
// failed or oversized read, the read's error.
func (r *Response) ReadJSON(max int, tape []uint32) (rawjson.Doc, error) {
	raw, err := r.ReadAll(max)
	if err != nil {
		return rawjson.Doc{Tape: tape[:0]}, err
	}
	return r.call.ParseJSON(raw, tape)
}

// imageBuf is reused across the calls of a warm instance.
var imageBuf []byte

// FetchImage has the host download the image at an http(s) URL a client
// sent (fetch_image, ABI 1.2), for providers that want image bytes inline.
// It returns the image's media type and its bytes in base64, ready for a
// JSON string; the slice is valid until the next FetchImage. The host
// refuses private addresses (unless the provider may reach them), other
// schemes, and anything that is not an image or is over its size cap; the
// error is then a *StatusError (DENIED, MALFORMED, LIMIT, UNREACHABLE,
// TIMEOUT).
//
// A plugin that calls FetchImage imports fetch_image and must declare
// "abi": "1.2" (or later) in its manifest.
func (c *Call) FetchImage(url string) (mediaType string, base64Data []byte, err error) {
	u := []byte(url)
	n := c.host.FetchImage(u, imageBuf[:0:cap(imageBuf)])
	if n > 0 && int(n) > cap(imageBuf) {
		// The host keeps the image: the second call does not download it.
		imageBuf = make([]byte, 0, n)
		n = c.host.FetchImage(u, imageBuf)
	}
	switch {
	case n < 0:
		return "", nil, statusErr("fetch_image", n)
	case n == 0 || int(n) > cap(imageBuf):
		return "", nil, &StatusError{Op: "fetch_image", Status: abi.StatusInvalid}
	}
	out := imageBuf[:n]
	for i, b := range out {
		if b == '\n' {
			return string(out[:i]), out[i+1:], nil
		}
	}
	return "", nil, &StatusError{Op: "fetch_image", Status: abi.StatusInvalid}
}
