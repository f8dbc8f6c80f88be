// Package rawjson reads and writes JSON as bytes, without reflection, for
// plugins that translate between wire formats inside a wasm guest.
//
// A Go wasip1 guest runs encoding/json roughly an order of magnitude slower
// than native code (sdk/ABI.md, "Performance guidance"), and a translation
// rarely needs a decoded value: it looks up a few members, copies values it
// does not change as they came, and writes the new document around them.
// This package does exactly that:
//
//   - Get, EachMember and EachElement find values in an object or an array
//     and return them as raw bytes (a sub-slice of the input, never a copy);
//   - every value they step over is checked against the JSON grammar, so a
//     raw value copied into an output document keeps it valid;
//   - StringContent, Unquote and IsString read strings, unescaping only when
//     the string has escapes;
//   - AppendString writes a JSON string literal.
//
// The contents of two raw strings can be concatenated without unescaping
// them: the result is a valid string literal with the escapes as they came.
//
// # Example
//
//	msg := []byte(`{"type":"text_delta","text":"Hel\"lo"}`)
//	text := rawjson.Get(msg, "text")           // `"Hel\"lo"`, as it came
//	out := append([]byte(`{"content":`), text...)
//	out = append(out, '}')                     // {"content":"Hel\"lo"}
package rawjson

import (
	"errors"
	"unicode/utf8"
)

// ErrSyntax reports input that is not valid JSON where a value was expected.
var ErrSyntax = errors.New("rawjson: malformed JSON")

// maxDepth bounds the nesting of arrays and objects, so that hostile input
// cannot exhaust the stack.
const maxDepth = 512

// Kind is the type of a JSON value, known from its first byte.
type Kind uint8

// The kinds of JSON values.
const (
	Invalid Kind = iota
	Null
	Bool
	Number
	String
	Array
	Object
)

// KindOf returns the kind of the value v starts with, after whitespace. It
// looks at one byte; it does not check the rest.
func KindOf(v []byte) Kind {
	i := skipWS(v, 0)
	if i >= len(v) {
		return Invalid
	}
	switch c := v[i]; {
	case c == '{':
		return Object
	case c == '[':
		return Array
	case c == '"':
		return String
	case c == 't' || c == 'f':
		return Bool
	case c == 'n':
		return Null
	case c == '-' || (c >= '0' && c <= '9'):
		return Number
	}
	return Invalid
}

// Valid reports whether b holds exactly one JSON value, optionally
// surrounded by whitespace.
func Valid(b []byte) bool {
	i := skipWS(b, 0)
	end, err := value(b, i, 0)
	return err == nil && skipWS(b, end) == len(b)
}

// Trim returns b without surrounding JSON whitespace.
func Trim(b []byte) []byte {
	i := skipWS(b, 0)
	j := len(b)
	for j > i && isWS(b[j-1]) {
		j--
	}
	return b[i:j]
}

// EachMember calls fn for every member of the object obj, in order. key is
// the member name as it appears between the quotes (escapes not decoded);
// value is the raw member value without surrounding whitespace. Iteration
// stops at the first error fn returns, which EachMember returns. A malformed
// object gives ErrSyntax, possibly after fn saw the members before the
// fault.
func EachMember(obj []byte, fn func(key, value []byte) error) error {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return ErrSyntax
	}
	i = skipWS(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return trailing(obj, i+1)
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return ErrSyntax
		}
		kend, err := str(obj, i)
		if err != nil {
			return err
		}
		key := obj[i+1 : kend-1]
		i = skipWS(obj, kend)
		if i >= len(obj) || obj[i] != ':' {
			return ErrSyntax
		}
		i = skipWS(obj, i+1)
		vend, err := value(obj, i, 1)
		if err != nil {
			return err
		}
		if err := fn(key, obj[i:vend]); err != nil {
			return err
		}
		i = skipWS(obj, vend)
		if i >= len(obj) {
			return ErrSyntax
		}
		switch obj[i] {
		case ',':
			i = skipWS(obj, i+1)
		case '}':
			return trailing(obj, i+1)
		default:
			return ErrSyntax
		}
	}
}

// EachElement calls fn for every element of the array arr, in order, with
// the raw element without surrounding whitespace. It stops at the first
// error fn returns, which it returns; a malformed array gives ErrSyntax.
func EachElement(arr []byte, fn func(value []byte) error) error {
	i := skipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return ErrSyntax
	}
	i = skipWS(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return trailing(arr, i+1)
	}
	for {
		end, err := value(arr, i, 1)
		if err != nil {
			return err
		}
		if err := fn(arr[i:end]); err != nil {
			return err
		}
		i = skipWS(arr, end)
		if i >= len(arr) {
			return ErrSyntax
		}
		switch arr[i] {
		case ',':
			i = skipWS(arr, i+1)
		case ']':
			return trailing(arr, i+1)
		default:
			return ErrSyntax
		}
	}
}

func trailing(b []byte, i int) error {
	if skipWS(b, i) != len(b) {
		return ErrSyntax
	}
	return nil
}

var errFound = errors.New("found")

// Get returns the raw value of the first member named key (compared with
// its escapes decoded) of the object obj, or nil when obj is not a valid
// object up to that member or has no such member.
func Get(obj []byte, key string) []byte {
	var out []byte
	err := EachMember(obj, func(k, v []byte) error {
		if keyIs(k, key) {
			out = v
			return errFound
		}
		return nil
	})
	if err != errFound {
		return nil
	}
	return out
}

// keyIs compares a member name as it appears between quotes with s.
func keyIs(k []byte, s string) bool {
	if len(k) == len(s) && string(k) == s {
		return true
	}
	for _, c := range k {
		if c == '\\' {
			u, ok := appendUnescaped(nil, k)
			return ok && string(u) == s
		}
	}
	return false
}

// IsString reports whether raw is a JSON string literal whose decoded value
// is s.
func IsString(raw []byte, s string) bool {
	raw = Trim(raw)
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return false
	}
	return keyIs(raw[1:len(raw)-1], s)
}

// StringContent returns the decoded value of the JSON string literal raw.
// When raw has no escapes the result shares raw's memory; otherwise it is a
// new slice. ok is false when raw is not a valid string literal.
func StringContent(raw []byte) (content []byte, ok bool) {
	raw = Trim(raw)
	if len(raw) < 2 || raw[0] != '"' {
		return nil, false
	}
	end, err := str(raw, 0)
	if err != nil || end != len(raw) {
		return nil, false
	}
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' {
			return appendUnescaped(make([]byte, 0, len(inner)), inner)
		}
	}
	return inner, true
}

// Unquote returns the decoded value of the JSON string literal raw.
func Unquote(raw []byte) (string, bool) {
	b, ok := StringContent(raw)
	return string(b), ok
}

// appendUnescaped decodes the escapes of a string's content (already
// checked by str, or checked here) and appends the result to dst.
func appendUnescaped(dst, s []byte) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i >= len(s) {
			return dst, false
		}
		switch s[i] {
		case '"', '\\', '/':
			dst = append(dst, s[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s, i+1)
			if !ok {
				return dst, false
			}
			i += 4
			if r >= 0xd800 && r < 0xdc00 {
				// A high surrogate: a low one must follow to make a pair.
				if i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					if r2, ok := hex4(s, i+3); ok && r2 >= 0xdc00 && r2 < 0xe000 {
						r = 0x10000 + (r-0xd800)<<10 + (r2 - 0xdc00)
						i += 6
					} else {
						r = utf8.RuneError
					}
				} else {
					r = utf8.RuneError
				}
			} else if r >= 0xdc00 && r < 0xe000 {
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, false
		}
	}
	return dst, true
}

func hex4(s []byte, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range s[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// Int returns the value of raw when it is a JSON number that is an integer
// in the int64 range (a fraction or exponent is refused).
func Int(raw []byte) (int64, bool) {
	raw = Trim(raw)
	if len(raw) == 0 {
		return 0, false
	}
	neg := raw[0] == '-'
	if neg {
		raw = raw[1:]
	}
	if len(raw) == 0 || len(raw) > 19 || (raw[0] == '0' && len(raw) > 1) {
		return 0, false
	}
	var n int64
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
		if n < 0 {
			return 0, false
		}
	}
	if neg {
		n = -n
	}
	return n, true
}

// IsNull reports whether raw is the literal null (absent values, nil, are
// not null).
func IsNull(raw []byte) bool { return string(Trim(raw)) == "null" }

// IsTrue reports whether raw is the literal true.
func IsTrue(raw []byte) bool { return string(Trim(raw)) == "true" }

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string literal, escaping what JSON
// requires plus U+2028 and U+2029 (as encoding/json does). Invalid UTF-8
// becomes U+FFFD.
func AppendString[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := decodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func decodeRune[S ~string | ~[]byte](s S) (rune, int) {
	switch v := any(s).(type) {
	case string:
		return utf8.DecodeRuneInString(v)
	case []byte:
		return utf8.DecodeRune(v)
	}
	return utf8.DecodeRuneInString(string(s))
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// value checks the value starting exactly at b[i] and returns the index
// just past it.
func value(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, ErrSyntax
	}
	switch c := b[i]; {
	case c == '"':
		return str(b, i)
	case c == '{':
		return object(b, i, depth+1)
	case c == '[':
		return array(b, i, depth+1)
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return number(b, i)
	}
	return 0, ErrSyntax
}

func literal(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, ErrSyntax
	}
	return i + len(lit), nil
}

// str checks the string literal at b[i] (which is '"') and returns the
// index just past its closing quote.
func str(b []byte, i int) (int, error) {
	i++
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(b) {
				return 0, ErrSyntax
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if _, ok := hex4(b, i+2); !ok {
					return 0, ErrSyntax
				}
				i += 6
			default:
				return 0, ErrSyntax
			}
		case c < 0x20:
			return 0, ErrSyntax
		default:
			i++
		}
	}
	return 0, ErrSyntax
}

// number checks a number with JSON's grammar:
// -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func number(b []byte, i int) (int, error) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return 0, ErrSyntax
	}
	if i < len(b) && b[i] == '.' {
		i++
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start {
			return 0, ErrSyntax
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start {
			return 0, ErrSyntax
		}
	}
	return i, nil
}

func object(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return 0, ErrSyntax
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, ErrSyntax
		}
		end, err := str(b, i)
		if err != nil {
			return 0, err
		}
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ':' {
			return 0, ErrSyntax
		}
		i = skipWS(b, i+1)
		if i, err = value(b, i, depth); err != nil {
			return 0, err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return 0, ErrSyntax
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return i + 1, nil
		default:
			return 0, ErrSyntax
		}
	}
}

func array(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return 0, ErrSyntax
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		if i, err = value(b, i, depth); err != nil {
			return 0, err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return 0, ErrSyntax
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case ']':
			return i + 1, nil
		default:
			return 0, ErrSyntax
		}
	}
}
