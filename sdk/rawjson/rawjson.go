// Package rawjson reads and writes JSON as bytes, without reflection, for
// plugins that translate between wire formats inside a wasm guest.
//
// A document is read through a tape: one entry per JSON value (and per
// object key), in document order, each giving the value's kind and where
// its bytes are. Parse builds the tape in Go; inside a plugin,
// sdk.Call.ParseJSON has the host build it natively (the json_tape host
// function, sdk/ABI.md), because byte loops are what a wasm guest does
// slowest. Walking a tape costs a few steps per value, never a step per
// byte.
//
// Values are returned as raw bytes, sub-slices of the input: a value that
// needs no change is copied into the output as it came, and the contents of
// two string literals can be joined without decoding them, since their
// escapes stay valid. AppendString writes a new string literal.
//
// # Example
//
//	doc, err := rawjson.Parse([]byte(`{"type":"text_delta","text":"Hel\"lo"}`), nil)
//	text := doc.Root().Get("text").Raw()       // `"Hel\"lo"`, as it came
//	out := append([]byte(`{"content":`), text...)
//	out = append(out, '}')                     // {"content":"Hel\"lo"}
//
// # Tape format
//
// The tape is a []uint32 holding 4 words per entry (the layout json_tape
// writes into guest memory, little-endian):
//
//	word 0  kind (Null 1, Bool 2, Number 3, String 4, Array 5, Object 6),
//	        plus FlagEscaped (0x100) on a string containing a backslash escape
//	word 1  offset of the value's first byte in the input
//	word 2  offset just past its last byte
//	word 3  index of the entry after the value and everything inside it
//
// Entry 0 is the root. An object's entry is followed by its members, each a
// key entry (a String) then the value's entries; an array's entry by its
// elements. For example {"a":[1,"x"]} (13 bytes) is
//
//	entry  kind    start end next
//	0      Object  0     13  5
//	1      String  1     4   2     the key "a"
//	2      Array   5     12  5
//	3      Number  6     7   4
//	4      String  8     11  5
package rawjson

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"unicode/utf8"
)

// ErrSyntax reports input that is not exactly one valid JSON value.
var ErrSyntax = errors.New("rawjson: malformed JSON")

// MaxDepth bounds the nesting of arrays and objects Parse accepts, so that
// hostile input cannot exhaust the stack.
const MaxDepth = 512

// Kind is the type of a JSON value.
type Kind uint8

// The kinds of JSON values; Invalid is the kind of an absent Value.
const (
	Invalid Kind = iota
	Null
	Bool
	Number
	String
	Array
	Object
)

// FlagEscaped marks, in word 0 of a String entry, a string literal that
// contains at least one backslash escape.
const FlagEscaped = 0x100

// EntryWords is the number of uint32 words per tape entry.
const EntryWords = 4

// Doc is a parsed document: the input and its tape. A Doc and its Values
// refer to Data and Tape without copying them.
type Doc struct {
	Data []byte
	Tape []uint32
}

// Parse checks that b holds exactly one JSON value, optionally surrounded
// by whitespace, and returns it with its tape, which reuses tape's memory
// when it is large enough.
func Parse(b []byte, tape []uint32) (Doc, error) {
	t, err := AppendTape(tape[:0], b)
	return Doc{Data: b, Tape: t}, err
}

// Valid reports whether b holds exactly one JSON value, optionally
// surrounded by whitespace.
func Valid(b []byte) bool {
	_, err := AppendTape(nil, b)
	return err == nil
}

// AppendTape appends the tape of the JSON document b to dst. The host's
// json_tape function runs exactly this.
func AppendTape(dst []uint32, b []byte) ([]uint32, error) {
	p := tapeBuilder{b: b, t: dst, base: len(dst) / EntryWords}
	i := skipWS(b, 0)
	end, err := p.value(i, 0)
	if err != nil {
		return dst, err
	}
	if skipWS(b, end) != len(b) {
		return dst, ErrSyntax
	}
	return p.t, nil
}

// Root is the document's top-level value.
func (d *Doc) Root() Value {
	if len(d.Tape) < EntryWords {
		return Value{}
	}
	return Value{d: d, i: 0}
}

// Value is one value of a Doc; the zero Value is absent (Kind Invalid).
// Values are small and passed by value.
type Value struct {
	d *Doc
	i int // entry index
}

func (v Value) word(n int) int { return int(v.d.Tape[v.i*EntryWords+n]) }

// Exists reports whether v is a value (not the absence of one).
func (v Value) Exists() bool { return v.d != nil }

// Kind is v's type, Invalid when v is absent.
func (v Value) Kind() Kind {
	if v.d == nil {
		return Invalid
	}
	return Kind(v.word(0) & 0xff)
}

// Raw returns v's bytes as they are in the input, nil when absent.
func (v Value) Raw() []byte {
	if v.d == nil {
		return nil
	}
	return v.d.Data[v.word(1):v.word(2)]
}

// Escaped reports whether v is a string literal with backslash escapes.
func (v Value) Escaped() bool { return v.d != nil && v.word(0)&FlagEscaped != 0 }

// next is the index of the entry after v and its contents.
func (v Value) next() int { return v.word(3) }

// Get returns the value of the first member named key (compared with its
// escapes decoded) of the object v; absent when v is not an object or has
// no such member.
func (v Value) Get(key string) Value {
	if v.Kind() != Object {
		return Value{}
	}
	end := v.next()
	for i := v.i + 1; i < end; {
		k := Value{d: v.d, i: i}
		if k.keyIs(key) {
			return Value{d: v.d, i: i + 1}
		}
		i = Value{d: v.d, i: i + 1}.next()
	}
	return Value{}
}

// keyIs compares the string v with s.
func (v Value) keyIs(s string) bool {
	start, end := v.word(1)+1, v.word(2)-1
	if v.word(0)&FlagEscaped == 0 {
		return Equal(v.d.Data[start:end], s)
	}
	u, ok := appendUnescaped(nil, v.d.Data[start:end])
	return ok && string(u) == s
}

// Equal reports whether b holds exactly the bytes of s. It is what a plugin
// should compare short byte strings with: Go's own comparison takes one
// loop iteration per byte on wasm, while Equal compares 8, 4, 2 or 1 bytes
// a step, overlapping its last step with the one before instead of looping
// over the tail, so a 19-byte key takes 3 steps.
func Equal[S ~string | ~[]byte](b []byte, s S) bool {
	n := len(s)
	if len(b) != n {
		return false
	}
	switch {
	case n >= 8:
		i := 0
		for ; i+8 < n; i += 8 {
			if le64(b[i:]) != le64(s[i:]) {
				return false
			}
		}
		return le64(b[n-8:]) == le64(s[n-8:])
	case n >= 4:
		return le32(b) == le32(s) && le32(b[n-4:]) == le32(s[n-4:])
	case n >= 2:
		return b[0] == s[0] && b[1] == s[1] && b[n-1] == s[n-1]
	case n == 1:
		return b[0] == s[0]
	}
	return true
}

func le64[S ~string | ~[]byte](s S) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func le32[S ~string | ~[]byte](s S) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// Members iterates over the members of an object:
//
//	for m := v.Members(); m.Next(); {
//		m.Key(), m.Value()
//	}
//
// It yields nothing when v is not an object.
func (v Value) Members() Members {
	if v.Kind() != Object {
		return Members{}
	}
	return Members{d: v.d, at: v.i + 1, end: v.next(), key: -1}
}

// Members is an iterator over an object's members.
type Members struct {
	d            *Doc
	at, end, key int
}

// Next moves to the next member and reports whether there is one.
func (m *Members) Next() bool {
	if m.d == nil {
		return false
	}
	if m.key >= 0 {
		m.at = Value{d: m.d, i: m.key + 1}.next()
	}
	if m.at >= m.end {
		return false
	}
	m.key = m.at
	return true
}

// Key is the member's name as it is between the quotes, escapes not
// decoded.
func (m *Members) Key() []byte {
	k := Value{d: m.d, i: m.key}
	return m.d.Data[k.word(1)+1 : k.word(2)-1]
}

// KeyIs compares the member's decoded name with s.
func (m *Members) KeyIs(s string) bool { return Value{d: m.d, i: m.key}.keyIs(s) }

// Value is the member's value.
func (m *Members) Value() Value { return Value{d: m.d, i: m.key + 1} }

// Elements iterates over the elements of an array:
//
//	for e := v.Elements(); e.Next(); {
//		e.Value()
//	}
//
// It yields nothing when v is not an array.
func (v Value) Elements() Elements {
	if v.Kind() != Array {
		return Elements{}
	}
	return Elements{d: v.d, at: v.i + 1, end: v.next(), cur: -1}
}

// Elements is an iterator over an array's elements.
type Elements struct {
	d            *Doc
	at, end, cur int
}

// Next moves to the next element and reports whether there is one.
func (e *Elements) Next() bool {
	if e.d == nil {
		return false
	}
	if e.cur >= 0 {
		e.at = Value{d: e.d, i: e.cur}.next()
	}
	if e.at >= e.end {
		return false
	}
	e.cur = e.at
	return true
}

// Value is the current element.
func (e *Elements) Value() Value { return Value{d: e.d, i: e.cur} }

// Len is the number of elements of an array or members of an object, 0
// for other kinds.
func (v Value) Len() int {
	n := 0
	switch v.Kind() {
	case Array:
		for e := v.Elements(); e.Next(); {
			n++
		}
	case Object:
		for m := v.Members(); m.Next(); {
			n++
		}
	}
	return n
}

// Str returns the decoded value of the string v. Without escapes the
// result shares the input's memory; with escapes it is a new slice. ok is
// false when v is not a string.
func (v Value) Str() (s []byte, ok bool) {
	if v.Kind() != String {
		return nil, false
	}
	inner := v.d.Data[v.word(1)+1 : v.word(2)-1]
	if v.word(0)&FlagEscaped == 0 {
		return inner, true
	}
	return appendUnescaped(make([]byte, 0, len(inner)), inner)
}

// StringIs reports whether v is a string whose decoded value is s.
func (v Value) StringIs(s string) bool { return v.Kind() == String && v.keyIs(s) }

// Int returns v when it is a number that is an integer in the int64 range
// (a fraction or an exponent is refused).
func (v Value) Int() (int64, bool) {
	if v.Kind() != Number {
		return 0, false
	}
	raw := v.Raw()
	neg := raw[0] == '-'
	if neg {
		raw = raw[1:]
	}
	if len(raw) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false // a fraction or an exponent
		}
		n = n*10 + uint64(c-'0')
	}
	if neg {
		if n > 1<<63 {
			return 0, false
		}
		return -int64(n), true
	}
	if n > 1<<63-1 {
		return 0, false
	}
	return int64(n), true
}

// IsNull reports whether v is null (an absent value is not).
func (v Value) IsNull() bool { return v.Kind() == Null }

// IsTrue reports whether v is true.
func (v Value) IsTrue() bool { return v.Kind() == Bool && v.d.Data[v.word(1)] == 't' }

// Unquote returns the decoded value of the JSON string literal raw.
func Unquote(raw []byte) (string, bool) {
	doc, err := Parse(raw, make([]uint32, 0, EntryWords))
	if err != nil {
		return "", false
	}
	s, ok := doc.Root().Str()
	return string(s), ok
}

// appendUnescaped decodes the escapes of a string's content (checked by
// the tape builder) and appends the result to dst.
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
		r, size := runeAt(s, i)
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

// runeAt decodes the UTF-8 sequence at s[i].
func runeAt[S ~string | ~[]byte](s S, i int) (rune, int) {
	var buf [utf8.UTFMax]byte
	n := copy(buf[:], s[i:])
	return utf8.DecodeRune(buf[:n])
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// tapeBuilder checks a document against the JSON grammar and records its
// tape.
type tapeBuilder struct {
	b    []byte
	t    []uint32
	base int // entries in t before this document
}

// add appends an entry and returns its index (relative to the document).
func (p *tapeBuilder) add(kind uint32, start, end int) int {
	i := len(p.t)/EntryWords - p.base
	p.t = append(p.t, kind, uint32(start), uint32(end), uint32(i+1))
	return i
}

// close sets the end offset and the next index of the container entry i.
func (p *tapeBuilder) close(i, end int) {
	w := (p.base + i) * EntryWords
	p.t[w+2] = uint32(end)
	p.t[w+3] = uint32(len(p.t)/EntryWords - p.base)
}

// value records the value starting exactly at b[i] and returns the index
// just past it.
func (p *tapeBuilder) value(i, depth int) (int, error) {
	b := p.b
	if i >= len(b) {
		return 0, ErrSyntax
	}
	switch c := b[i]; {
	case c == '"':
		end, esc, err := str(b, i)
		if err != nil {
			return 0, err
		}
		k := uint32(String)
		if esc {
			k |= FlagEscaped
		}
		p.add(k, i, end)
		return end, nil
	case c == '{':
		return p.object(i, depth+1)
	case c == '[':
		return p.array(i, depth+1)
	case c == 't':
		return p.literal(i, "true", Bool)
	case c == 'f':
		return p.literal(i, "false", Bool)
	case c == 'n':
		return p.literal(i, "null", Null)
	case c == '-' || (c >= '0' && c <= '9'):
		end, err := number(b, i)
		if err != nil {
			return 0, err
		}
		p.add(uint32(Number), i, end)
		return end, nil
	}
	return 0, ErrSyntax
}

func (p *tapeBuilder) literal(i int, lit string, k Kind) (int, error) {
	if len(p.b)-i < len(lit) || string(p.b[i:i+len(lit)]) != lit {
		return 0, ErrSyntax
	}
	p.add(uint32(k), i, i+len(lit))
	return i + len(lit), nil
}

func (p *tapeBuilder) object(i, depth int) (int, error) {
	if depth > MaxDepth {
		return 0, ErrSyntax
	}
	b := p.b
	e := p.add(uint32(Object), i, 0)
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		p.close(e, i+1)
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, ErrSyntax
		}
		end, esc, err := str(b, i)
		if err != nil {
			return 0, err
		}
		k := uint32(String)
		if esc {
			k |= FlagEscaped
		}
		p.add(k, i, end)
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ':' {
			return 0, ErrSyntax
		}
		i = skipWS(b, i+1)
		if i, err = p.value(i, depth); err != nil {
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
			p.close(e, i+1)
			return i + 1, nil
		default:
			return 0, ErrSyntax
		}
	}
}

func (p *tapeBuilder) array(i, depth int) (int, error) {
	if depth > MaxDepth {
		return 0, ErrSyntax
	}
	b := p.b
	e := p.add(uint32(Array), i, 0)
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		p.close(e, i+1)
		return i + 1, nil
	}
	for {
		var err error
		if i, err = p.value(i, depth); err != nil {
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
			p.close(e, i+1)
			return i + 1, nil
		default:
			return 0, ErrSyntax
		}
	}
}

// SWAR constants: a byte repeated over a 64-bit word.
const (
	ones   = 0x0101010101010101
	highs  = 0x8080808080808080
	quotes = '"' * ones
	slashs = '\\' * ones
)

// special returns a mask with the high bit of every byte of x that is a
// quote, a backslash or a control character: the bytes that end or
// interrupt a string's plain run. The lowest marked byte is always exact
// (borrows can only mark bytes above a real match), which is all str uses.
func special(x uint64) uint64 {
	ctl := (x - 0x20*ones) & ^x & highs
	q := x ^ quotes
	q = (q - ones) & ^q & highs
	bs := x ^ slashs
	bs = (bs - ones) & ^bs & highs
	return ctl | q | bs
}

// str checks the string literal at b[i] (which is '"') and returns the
// index just past its closing quote and whether it has escapes.
func str(b []byte, i int) (int, bool, error) {
	esc := false
	i++
	for {
		// Strings are mostly plain text: look at 8 bytes at a time and go
		// straight to the first one that is not plain.
		if i+8 <= len(b) {
			m := special(binary.LittleEndian.Uint64(b[i:]))
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
		} else {
			for i < len(b) && b[i] >= 0x20 && b[i] != '"' && b[i] != '\\' {
				i++
			}
			if i >= len(b) {
				return 0, false, ErrSyntax
			}
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, esc, nil
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				return 0, false, ErrSyntax
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if _, ok := hex4(b, i+2); !ok {
					return 0, false, ErrSyntax
				}
				i += 6
			default:
				return 0, false, ErrSyntax
			}
		default: // a control character
			return 0, false, ErrSyntax
		}
	}
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
