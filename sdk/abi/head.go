package abi

import (
	"bytes"
	"errors"
)

// An upstream request head, as passed to http_send, is plain text:
//
//	METHOD SP URL LF
//	Name: value LF
//	...
//
// For example:
//
//	POST https://api.openai.com/v1/chat/completions
//	Content-Type: application/json
//
// A trailing LF after the last header is optional, CR before LF is tolerated,
// header names are case-insensitive, and neither names nor values may contain
// CR or LF (so no header can be smuggled).

// Head is a decoded request head.
type Head struct {
	Method  string
	URL     string
	Headers [][2]string
}

// ErrBadHead reports a request head that does not follow the format above.
var ErrBadHead = errors.New("malformed request head")

// AppendHead encodes a request head. It does no validation; ParseHead does.
func AppendHead(dst []byte, method, url string, headers [][2]string) []byte {
	dst = append(dst, method...)
	dst = append(dst, ' ')
	dst = append(dst, url...)
	dst = append(dst, '\n')
	for _, h := range headers {
		dst = append(dst, h[0]...)
		dst = append(dst, ':', ' ')
		dst = append(dst, h[1]...)
		dst = append(dst, '\n')
	}
	return dst
}

// ParseHead decodes a request head written by AppendHead or by any plugin
// following the format.
func ParseHead(b []byte) (Head, error) {
	var h Head
	line, rest, _ := bytes.Cut(b, []byte{'\n'})
	line = bytes.TrimSuffix(line, []byte{'\r'})
	method, url, ok := bytes.Cut(line, []byte{' '})
	if !ok || len(method) == 0 || len(url) == 0 || !isToken(method) || bytes.ContainsAny(url, " \r\t") {
		return h, ErrBadHead
	}
	h.Method, h.URL = string(method), string(url)
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			continue
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok || len(name) == 0 || !isToken(name) || bytes.IndexByte(value, '\r') >= 0 {
			return h, ErrBadHead
		}
		h.Headers = append(h.Headers, [2]string{string(name), string(bytes.TrimSpace(value))})
	}
	return h, nil
}

// isToken reports whether b is an HTTP token (RFC 9110 tchar).
func isToken(b []byte) bool {
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0:
		default:
			return false
		}
	}
	return len(b) > 0
}
