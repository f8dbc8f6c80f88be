// Package sse splits a Server-Sent Events byte stream into events and
// writes "data:" frames.
//
// It follows the event-stream interpretation rules of the WHATWG HTML
// standard ("Server-sent events", section "Interpreting an event
// stream"). It is written for plugins compiled to WebAssembly
// (GOOS=wasip1 GOARCH=wasm) as well as for native hosts, so it uses no
// reflection and no fmt, and it does not allocate per event once its
// internal buffers have grown to the size of the largest event seen.
package sse

import (
	"bytes"
	"errors"
	"slices"
)

// DefaultMaxEventBytes is the default limit on the size of one event; see
// [Parser.SetMaxEventBytes].
const DefaultMaxEventBytes = 8 << 20

// ErrEventTooLarge is reported by [Parser.Err] once an event grows beyond
// the limit set with [Parser.SetMaxEventBytes].
var ErrEventTooLarge = errors.New("sse: event exceeds the size limit")

// Event is one dispatched event.
//
// The slices point into buffers owned by the [Parser]. They stay valid
// only until the next call of Feed, Next, Flush or Reset on that parser;
// copy them to keep them longer.
type Event struct {
	// Name is the value of the last "event" field of the event, or nil if
	// there was none or its value was empty (the spec's "message" type).
	Name []byte
	// Data is the values of all "data" fields of the event joined with
	// '\n'. It is never nil for a dispatched event, but may be empty (a
	// lone "data" line).
	Data []byte
	// ID is the value of the last "id" field of the event, or nil if the
	// event had no "id" field. An "id" field with an empty value gives a
	// non-nil empty slice (the spec uses that to clear the last event ID).
	// "id" values containing a NUL byte are ignored, as the spec requires.
	//
	// ID is per event: unlike a browser's lastEventId it is not carried
	// over to later events. Callers that need the spec's "last event ID"
	// should remember the most recent non-nil ID themselves.
	ID []byte
}

// emptyID is returned as Event.ID for an "id" field with an empty value.
// It has zero capacity, so appending to it never touches shared memory.
var emptyID = []byte{}

var bom = []byte{0xEF, 0xBB, 0xBF}

// Parser splits an SSE stream into events as bytes arrive, in pieces of
// any size. The zero value is ready to use, with the default size limit.
//
// Typical use:
//
//	p.Feed(chunk)
//	for {
//		ev, ok := p.Next()
//		if !ok {
//			break
//		}
//		// use ev before the next call on p
//	}
//	if err := p.Err(); err != nil { ... }
//
// and at the end of the stream, drain the remaining events with Flush.
//
// A Parser is not safe for concurrent use.
type Parser struct {
	buf  []byte // received bytes; buf[pos:] are not yet consumed
	pos  int    // start of the first unconsumed line
	scan int    // buf[pos:scan] is known to hold no CR or LF

	// State of the event being assembled.
	data    []byte // "data" values, each followed by '\n'
	name    []byte // last "event" value
	id      []byte // last "id" value
	hasID   bool   // an "id" field has been seen in this event
	evBytes int    // bytes of lines consumed into this event (line endings count one)

	skipLF   bool // the last line ended with CR; a following LF belongs to it
	bomDone  bool // the start of the stream has been checked for a BOM
	maxEvent int  // size limit; 0 means DefaultMaxEventBytes
	err      error
}

// SetMaxEventBytes limits the size of a single event. An event counts all
// of its lines, including comments, unknown fields and line endings
// (each ending counts as one byte), up to but excluding the blank line
// that ends it. Once an event that is still incomplete exceeds n bytes,
// the parser drops what it holds, [Parser.Err] returns [ErrEventTooLarge]
// and Next and Flush return no more events. n <= 0 restores
// [DefaultMaxEventBytes].
//
// The limit bounds memory as long as Next is called after every Feed
// until it returns false; bytes passed to Feed are stored before they are
// examined.
func (p *Parser) SetMaxEventBytes(n int) {
	p.maxEvent = max(n, 0)
}

func (p *Parser) limit() int {
	if p.maxEvent <= 0 {
		return DefaultMaxEventBytes
	}
	return p.maxEvent
}

// Err returns [ErrEventTooLarge] if the size limit was exceeded, otherwise
// nil. Only Reset clears it.
func (p *Parser) Err() error { return p.err }

// Reset discards all state so the parser can read a new stream. The size
// limit is kept, and so are the buffers' capacities.
func (p *Parser) Reset() {
	*p = Parser{
		buf:      p.buf[:0],
		data:     p.data[:0],
		name:     p.name[:0],
		id:       p.id[:0],
		maxEvent: p.maxEvent,
	}
}

// Buffered reports how many received bytes have not yet been returned as
// part of an event: the incomplete event at the end of the stream plus
// any complete events that Next has not returned yet. After Next has
// returned false it is the size of the incomplete event (line endings
// that were already consumed count as one byte each).
func (p *Parser) Buffered() int {
	return p.evBytes + len(p.buf) - p.pos
}

// Feed appends newly arrived bytes. b is copied, so the caller may reuse
// it. Feeding after an error is a no-op.
func (p *Parser) Feed(b []byte) {
	if p.err != nil || len(b) == 0 {
		return
	}
	if p.pos > 0 {
		// Move the unconsumed tail to the front so the buffer does not
		// grow with the total stream length. Events never alias buf, so
		// this is safe even while an event returned earlier is in use.
		n := copy(p.buf, p.buf[p.pos:])
		p.buf = p.buf[:n]
		p.scan -= p.pos
		p.pos = 0
	}
	p.buf = append(p.buf, b...)
}

// Next returns the next complete event, if one has fully arrived. It
// returns false when more input is needed or after an error (see Err).
func (p *Parser) Next() (Event, bool) {
	return p.advance(false)
}

// Flush is for the end of the stream. It first returns, one per call, any
// complete events still pending, exactly like Next. When none are left it
// treats the remaining bytes as if the stream had ended with a line
// ending and a blank line, and returns that final event if it has data.
// After that it returns false until more bytes are fed.
//
// Note that the spec says a browser discards an event that is not
// terminated by a blank line; Flush deliberately keeps it, because
// upstreams often close the connection right after their last line.
func (p *Parser) Flush() (Event, bool) {
	return p.advance(true)
}

func (p *Parser) advance(eof bool) (Event, bool) {
	if p.err != nil {
		return Event{}, false
	}
	if !p.bomDone {
		rest := p.buf[p.pos:]
		if len(rest) < len(bom) && bytes.HasPrefix(bom, rest) && (!eof || len(rest) == 0) {
			// Nothing has arrived yet, or what has could still be the
			// start of a BOM.
			return Event{}, false
		}
		if bytes.HasPrefix(rest, bom) {
			p.pos += len(bom)
			p.scan = max(p.scan, p.pos)
		}
		p.bomDone = true
	}
	limit := p.limit()
	for {
		line, ok := p.nextLine()
		if !ok {
			break
		}
		if len(line) == 0 {
			if ev, ok := p.dispatch(); ok {
				return ev, true
			}
			continue
		}
		p.evBytes += len(line) + 1
		if p.evBytes > limit {
			p.fail()
			return Event{}, false
		}
		p.field(line)
	}
	// No complete line is left; what remains is part of an event.
	partial := len(p.buf) - p.pos
	if p.evBytes+partial > limit {
		p.fail()
		return Event{}, false
	}
	if !eof {
		return Event{}, false
	}
	if partial > 0 {
		p.field(p.buf[p.pos:])
	}
	p.buf = p.buf[:0]
	p.pos, p.scan = 0, 0
	p.skipLF = false
	return p.dispatch()
}

// nextLine returns the next complete line without its ending, or false if
// the rest of the buffer holds no line ending.
func (p *Parser) nextLine() ([]byte, bool) {
	if p.skipLF && p.pos < len(p.buf) {
		if p.buf[p.pos] == '\n' {
			p.pos++
			p.scan = max(p.scan, p.pos)
		}
		p.skipLF = false
	}
	end := lineEnd(p.buf[p.scan:])
	if end < 0 {
		p.scan = len(p.buf)
		return nil, false
	}
	end += p.scan
	line := p.buf[p.pos:end]
	if p.buf[end] == '\r' {
		p.skipLF = true
	}
	p.pos = end + 1
	p.scan = p.pos
	return line, true
}

// lineEnd returns the index of the first CR or LF in b, or -1.
func lineEnd(b []byte) int {
	// Two IndexByte searches are much faster than bytes.IndexAny, which
	// walks the input one byte at a time. The CR search only covers the
	// part before the first LF.
	end := bytes.IndexByte(b, '\n')
	if end < 0 {
		return bytes.IndexByte(b, '\r')
	}
	if cr := bytes.IndexByte(b[:end], '\r'); cr >= 0 {
		return cr
	}
	return end
}

// field applies one non-empty line to the event being assembled.
func (p *Parser) field(line []byte) {
	if line[0] == ':' {
		return // comment
	}
	var name, value []byte
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	} else {
		name = line
	}
	// string(name) in a comparison does not allocate.
	switch string(name) {
	case "data":
		p.data = append(p.data, value...)
		p.data = append(p.data, '\n')
	case "event":
		p.name = append(p.name[:0], value...)
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			p.id = append(p.id[:0], value...)
			p.hasID = true
		}
	}
	// "retry" and unknown fields are ignored.
}

// dispatch ends the current event. It returns the event if its data
// buffer is non-empty, and resets the per-event state either way. The
// buffers are truncated, not cleared, so the returned slices stay intact
// until the next write into them.
func (p *Parser) dispatch() (Event, bool) {
	var ev Event
	ok := len(p.data) > 0
	if ok {
		ev.Data = p.data[:len(p.data)-1]
		if len(p.name) > 0 {
			ev.Name = p.name
		}
		if p.hasID {
			ev.ID = p.id
			if ev.ID == nil {
				ev.ID = emptyID
			}
		}
	}
	p.data = p.data[:0]
	p.name = p.name[:0]
	p.id = p.id[:0]
	p.hasID = false
	p.evBytes = 0
	return ev, ok
}

func (p *Parser) fail() {
	p.err = ErrEventTooLarge
	p.buf = p.buf[:0]
	p.pos, p.scan = 0, 0
	p.data = p.data[:0]
	p.name = p.name[:0]
	p.id = p.id[:0]
	p.hasID = false
	p.evBytes = 0
	p.skipLF = false
}

// AppendData appends payload to dst as one SSE event made of "data:"
// lines and a terminating blank line, and returns the extended slice.
// Each line of payload gets its own "data: " line; LF, CRLF and a lone CR
// all count as line breaks. A Parser reading the result returns payload
// with its line breaks turned into LF. An empty payload becomes
// "data: \n\n", an event with empty data.
//
// It allocates only if dst lacks the capacity for the result.
func AppendData(dst, payload []byte) []byte {
	// Exact for the usual single-line payload; extra lines grow dst
	// through append.
	dst = slices.Grow(dst, len(payload)+len("data: \n\n"))
	for {
		dst = append(dst, "data: "...)
		i := lineEnd(payload)
		if i < 0 {
			dst = append(dst, payload...)
			break
		}
		dst = append(dst, payload[:i]...)
		dst = append(dst, '\n')
		if payload[i] == '\r' && i+1 < len(payload) && payload[i+1] == '\n' {
			i++
		}
		payload = payload[i+1:]
	}
	return append(dst, '\n', '\n')
}
