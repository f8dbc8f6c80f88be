// Package bodylog prepares request and response bodies for the request
// log, when [logs] bodies is on.
//
// The work is split so that the request path pays only for a copy. On the
// request path, [Copy] and [Keep] take at most the configured number of
// bytes of a body. On the request log's writer goroutine, [Policy.Prepare] replaces
// the values of the configured JSON keys by "[REDACTED]", cuts the result
// to the cap again and, when the body was longer than the cap, marks it
// with a suffix that says how long it was:
//
//	{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Once upon a…[truncated from 183211 bytes]
//
// A string value that holds JSON itself, such as a tool call's
// "arguments", is redacted inside too. Not covered: secrets outside
// redacted keys (in free text, or under another key name), and tool-call
// arguments streamed in pieces, where no single event holds both the key
// and its value.
//
// Redaction works on the bytes, not on a decoded document, so it also
// covers a body cut in the middle of a value (the value that was cut is
// redacted to its end), bodies that are not valid JSON (whatever can be
// recognised as `"key": value` is redacted), and a stream's server-sent
// events, whose data lines are redacted event by event. Everything else is
// kept byte for byte: the order of the keys, their spacing and any field
// the proxy does not know.
package bodylog

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Redacted replaces the value of a redacted key.
const Redacted = `"[REDACTED]"`

// truncatedPrefix starts the mark appended to a body cut at the cap; the
// body's full size in bytes and "]" follow.
const truncatedPrefix = "…[truncated from "

// TruncatedSuffix returns the mark appended to a body of size bytes that
// was cut at the cap.
func TruncatedSuffix(size int) string {
	return truncatedPrefix + strconv.Itoa(size) + " bytes]"
}

// Copy returns a copy of at most n bytes of b; a nil b stays nil.
func Copy(b []byte, n int) []byte {
	if b == nil {
		return nil
	}
	n = min(len(b), n)
	return append(make([]byte, 0, n), b[:n]...)
}

// Keep returns b itself when it is within n bytes, and otherwise a copy of
// its first n bytes, so that a queued row never holds more than the cap.
// The caller must not modify b afterwards.
func Keep(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return Copy(b, n)
}

// Policy is the cap and the redacted keys. Its methods are safe for
// concurrent use.
type Policy struct {
	max    int
	fields map[string]struct{} // lower case
}

// New returns a policy that keeps limit bytes of a body and redacts the
// values of fields (JSON object keys, matched without regard to case).
func New(limit int, fields []string) *Policy {
	p := &Policy{max: limit, fields: make(map[string]struct{}, len(fields))}
	for _, f := range fields {
		p.fields[strings.ToLower(f)] = struct{}{}
	}
	return p
}

// Max is the cap of one body, in bytes.
func (p *Policy) Max() int { return p.max }

// Prepare turns a body taken with Copy into the text to store. size is the
// full size of the body, of which b holds the first bytes: when it is
// larger than len(b) the body was cut and the result says so. A body that
// starts with "data:" is taken for server-sent events.
func (p *Policy) Prepare(b []byte, size int) string {
	truncated := size > len(b)
	if bytes.HasPrefix(b, []byte("data:")) {
		b = p.redactSSE(b)
	} else {
		b = p.redactJSON(nil, b)
	}
	if len(b) > p.max { // only when redaction made the body longer
		b = b[:runeStart(b, p.max)]
		truncated = true
	}
	if !truncated {
		return string(b)
	}
	return string(b) + TruncatedSuffix(size)
}

// runeStart returns the largest i <= n at which b can be cut without
// splitting a UTF-8 character.
func runeStart(b []byte, n int) int {
	for i := n; i > n-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(b[i]) {
			return i
		}
	}
	return n
}

// redactSSE redacts the data of each event. An event's data lines are
// joined as SSE clients join them, redacted as one JSON text and, if that
// changed anything, written back one line per line of the result, so a
// value is redacted even when the data is spread over several lines. With
// nothing to redact it returns b itself.
func (p *Policy) redactSSE(b []byte) []byte {
	var out []byte // nil until an event changes
	last := 0      // b[last:] has not been copied to out yet
	var joined []byte
	for pos := 0; pos < len(b); {
		start, lines, cut := pos, 0, false
		var data []byte
		for pos < len(b) && bytes.HasPrefix(b[pos:], []byte("data:")) {
			end := bytes.IndexByte(b[pos:], '\n')
			next := pos + end + 1
			if end < 0 { // the cap cut this line
				end, next, cut = len(b)-pos, len(b), true
			}
			v := bytes.TrimPrefix(b[pos+len("data:"):pos+end], []byte(" "))
			switch lines {
			case 0:
				data = v
			case 1:
				joined = append(append(append(joined[:0], data...), '\n'), v...)
				data = joined
			default:
				joined = append(append(joined, '\n'), v...)
				data = joined
			}
			lines++
			pos = next
		}
		if lines == 0 { // another line: kept as it is
			end := bytes.IndexByte(b[pos:], '\n')
			if end < 0 {
				break
			}
			pos += end + 1
			continue
		}
		red, changed := p.redact(nil, data)
		if !changed {
			continue
		}
		out = append(out, b[last:start]...)
		for line := range bytes.SplitSeq(red, []byte("\n")) {
			out = append(out, "data: "...)
			out = append(out, line...)
			out = append(out, '\n')
		}
		if cut {
			out = out[:len(out)-1]
		}
		last = pos
	}
	if out == nil {
		return b
	}
	return append(out, b[last:]...)
}

// redactJSON appends src to dst with the value of every member whose key
// is a redacted field replaced by Redacted; a null value is kept. It
// follows the structure leniently: text that is not JSON is copied as it
// is, and a value that src ends in the middle of is redacted to the end.
// With nothing to redact it returns src itself.
func (p *Policy) redactJSON(dst, src []byte) []byte {
	out, _ := p.redact(dst, src)
	return out
}

// redact is redactJSON, and reports whether it changed anything.
func (p *Policy) redact(dst, src []byte) (_ []byte, changed bool) {
	if len(p.fields) == 0 {
		return src, false
	}
	var stackBuf [32]byte
	stack := stackBuf[:0] // '{' or '[' for each open container
	expectKey := false    // the next string in an object is a key
	redactNext := false
	last := 0 // src[last:] has not been copied to dst yet
	for i := 0; i < len(src); {
		switch c := src[i]; c {
		case '"':
			end, closed := scanString(src, i)
			if expectKey && len(stack) > 0 && stack[len(stack)-1] == '{' {
				redactNext = p.isField(src[i:end])
				expectKey = false
			} else if red, ok := p.redactEmbedded(src[i:end], !closed); ok {
				dst = append(dst, src[last:i]...)
				dst = append(dst, red...)
				last, changed = end, true
			}
			i = end
			continue
		case '{':
			stack = append(stack, c)
			expectKey, redactNext = true, false
		case '[':
			stack = append(stack, c)
			expectKey, redactNext = false, false
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			expectKey, redactNext = false, false
		case ',':
			expectKey = len(stack) > 0 && stack[len(stack)-1] == '{'
			redactNext = false
		case ':':
			if !redactNext {
				break
			}
			redactNext = false
			start := i + 1
			for start < len(src) && isSpace(src[start]) {
				start++
			}
			end := valueEnd(src, start)
			if bytes.Equal(src[start:end], []byte("null")) {
				i = end
				continue
			}
			dst = append(dst, src[last:start]...)
			dst = append(dst, Redacted...)
			last, i, changed = end, end, true
			continue
		}
		i++
	}
	if !changed {
		return src, false
	}
	return append(dst, src[last:]...), true
}

// redactEmbedded redacts a JSON string value (with its quotes) that holds
// a JSON object or array itself, such as a tool call's "arguments":
// {"arguments":"{\"password\":\"hunter2\"}"}. It returns the string
// re-encoded with the inner values redacted, and false when s does not
// hold JSON (its text must start with '{' or '[') or has nothing to
// redact. A string cut short by the cap (cut: it has no closing quote) is
// redacted as far as it goes and stays unterminated.
func (p *Policy) redactEmbedded(s []byte, cut bool) ([]byte, bool) {
	if len(s) < 3 || (s[1] != '{' && s[1] != '[') {
		return nil, false
	}
	var inner string
	decoded := !cut && json.Unmarshal(s, &inner) == nil
	// A cut string is closed, dropping a partial escape such as `\u00` at
	// its end.
	for drop := 0; cut && !decoded && drop <= 6 && drop < len(s)-1; drop++ {
		decoded = json.Unmarshal(append(s[:len(s)-drop:len(s)-drop], '"'), &inner) == nil
	}
	if !decoded {
		return nil, false
	}
	red, changed := p.redact(nil, []byte(inner))
	if !changed {
		return nil, false
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if enc.Encode(string(red)) != nil {
		return nil, false
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if cut {
		out = out[:len(out)-1]
	}
	return out, true
}

// isField reports whether the JSON string s (with its quotes; the closing
// one may be missing) names a redacted field.
func (p *Policy) isField(s []byte) bool {
	if len(s) < 2 || s[len(s)-1] != '"' {
		return false
	}
	name := s[1 : len(s)-1]
	if bytes.IndexByte(name, '\\') >= 0 {
		var u string
		if json.Unmarshal(s, &u) != nil {
			return false
		}
		name = []byte(u)
	}
	var buf [64]byte
	if len(name) <= len(buf) {
		lower := buf[:len(name)]
		ascii := true
		for i, c := range name {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			lower[i] = c
			ascii = ascii && c < utf8.RuneSelf
		}
		if ascii {
			_, ok := p.fields[string(lower)] // a map lookup does not allocate
			return ok
		}
	}
	_, ok := p.fields[strings.ToLower(string(name))]
	return ok
}

// stringEnd returns the index just after the string starting at src[i]
// (a '"'), or len(src) if it does not end.
func stringEnd(src []byte, i int) int {
	end, _ := scanString(src, i)
	return end
}

// scanString is stringEnd, and reports whether the string has its closing
// quote.
func scanString(src []byte, i int) (end int, closed bool) {
	for j := i + 1; j < len(src); j++ {
		switch src[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return len(src), false
}

// valueEnd returns the index just after the value starting at src[i]: a
// string, an object or array with everything inside it, or a number or
// literal up to the next delimiter; len(src) if src ends first.
func valueEnd(src []byte, i int) int {
	if i >= len(src) {
		return i
	}
	switch src[i] {
	case '"':
		return stringEnd(src, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(src); {
			switch src[j] {
			case '"':
				j = stringEnd(src, j)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
			j++
		}
		return len(src)
	}
	j := i
	for j < len(src) && !isSpace(src[j]) && src[j] != ',' && src[j] != '}' && src[j] != ']' {
		j++
	}
	return j
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
