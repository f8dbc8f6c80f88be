package sse

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// rec is a copied, comparable form of Event. The Has flags tell a nil
// slice from an empty one.
type rec struct {
	Name, Data, ID string
	HasName, HasID bool
}

func toRec(ev Event) rec {
	return rec{
		Name: string(ev.Name), HasName: ev.Name != nil,
		Data: string(ev.Data),
		ID:   string(ev.ID), HasID: ev.ID != nil,
	}
}

func data(s string) rec { return rec{Data: s} }

func named(name, s string) rec { return rec{Name: name, HasName: true, Data: s} }

func withID(id, s string) rec { return rec{ID: id, HasID: true, Data: s} }

// run feeds the chunks in order, draining Next after each, then drains
// Flush. It returns the events seen and the final error.
func run(t testing.TB, p *Parser, chunks ...[]byte) ([]rec, error) {
	t.Helper()
	var out []rec
	for _, c := range chunks {
		p.Feed(c)
		for {
			ev, ok := p.Next()
			if !ok {
				break
			}
			if ev.Data == nil {
				t.Fatalf("dispatched event with nil Data")
			}
			out = append(out, toRec(ev))
		}
	}
	for i := 0; ; i++ {
		ev, ok := p.Flush()
		if !ok {
			break
		}
		if i > len(chunks)+16 {
			t.Fatalf("Flush keeps returning events")
		}
		out = append(out, toRec(ev))
	}
	if _, ok := p.Flush(); ok {
		t.Fatalf("Flush returned an event after returning false")
	}
	return out, p.Err()
}

func newParser(limit int) *Parser {
	p := new(Parser)
	p.SetMaxEventBytes(limit)
	return p
}

func equalRecs(a, b []rec) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func fmtRecs(rs []rec) string {
	var sb strings.Builder
	sb.WriteByte('[')
	for i, r := range rs {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteByte('{')
		if r.HasName {
			sb.WriteString("name=" + strconv.Quote(r.Name) + " ")
		}
		if r.HasID {
			sb.WriteString("id=" + strconv.Quote(r.ID) + " ")
		}
		sb.WriteString("data=" + strconv.Quote(r.Data) + "}")
	}
	sb.WriteByte(']')
	return sb.String()
}

// refParse is a deliberately plain implementation of the same rules,
// working on the whole stream at once, used as an oracle. The end of the
// input acts as a final blank line (Flush semantics).
func refParse(s string) []rec {
	s = strings.TrimPrefix(s, "\uFEFF")
	var lines []string
	for len(s) > 0 {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			lines = append(lines, s)
			break
		}
		lines = append(lines, s[:i])
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
	}
	lines = append(lines, "")

	var out []rec
	var dataBuf, name, id string
	hasID := false
	for _, line := range lines {
		if line == "" {
			if dataBuf != "" {
				r := rec{Data: strings.TrimSuffix(dataBuf, "\n")}
				if name != "" {
					r.Name, r.HasName = name, true
				}
				if hasID {
					r.ID, r.HasID = id, true
				}
				out = append(out, r)
			}
			dataBuf, name, id, hasID = "", "", "", false
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "data":
			dataBuf += value + "\n"
		case "event":
			name = value
		case "id":
			if !strings.Contains(value, "\x00") {
				id, hasID = value, true
			}
		}
	}
	return out
}

const openAIChunk = `data: {"id":"chatcmpl-9xYzAbCdEfGhIjKlMnOpQrStUv","object":"chat.completion.chunk","created":1727370000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}],"usage":null}` + "\n\n"

const openAIStream = `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n" +
	`data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}` + "\n\n" +
	": OPENROUTER PROCESSING\n\n" +
	`data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}` + "\n\n" +
	"data: [DONE]\n\n"

type parseCase struct {
	name    string
	in      string
	want    []rec
	limit   int  // SetMaxEventBytes argument; 0 = default
	wantErr bool // expect ErrEventTooLarge at the end
}

var parseCases = []parseCase{
	{name: "empty", in: "", want: nil},
	{name: "only blank lines", in: "\n\r\n\r\n\n", want: nil},
	{name: "LF", in: "data: a\n\ndata: b\n\n", want: []rec{data("a"), data("b")}},
	{name: "CRLF", in: "data: a\r\n\r\ndata: b\r\n\r\n", want: []rec{data("a"), data("b")}},
	{name: "CR", in: "data: a\r\rdata: b\r\r", want: []rec{data("a"), data("b")}},
	{name: "mixed endings", in: "data: a\r\ndata: b\rdata: c\n\r\n", want: []rec{data("a\nb\nc")}},
	{name: "CR then LF then CR is two endings", in: "data: a\r\n\rdata: b\n\n", want: []rec{data("a"), data("b")}},
	{name: "LF CR is two endings", in: "data: a\n\rdata: b\n\n", want: []rec{data("a"), data("b")}},
	{name: "multi-line data", in: "data: line1\ndata: line2\ndata: line3\n\n", want: []rec{data("line1\nline2\nline3")}},
	{name: "empty data lines", in: "data\ndata:\ndata: \n\n", want: []rec{data("\n\n")}},
	{name: "lone empty data line is dispatched", in: "data:\n\n", want: []rec{data("")}},
	{name: "field without colon", in: "data\n\n", want: []rec{data("")}},
	{name: "no space after colon", in: "data:x\n\n", want: []rec{data("x")}},
	{name: "only one space removed", in: "data:  x \n\n", want: []rec{data(" x ")}},
	{name: "colon in value", in: "data: a:b: c\n\n", want: []rec{data("a:b: c")}},
	{name: "comments", in: ": keepalive\n\n:x\ndata: x\n: inside\ndata: y\n\n", want: []rec{data("x\ny")}},
	{name: "comment only stream", in: ":a\n\n:b\n\n", want: nil},
	{name: "event name", in: "event: delta\ndata: {}\n\n", want: []rec{named("delta", "{}")}},
	{name: "last event name wins", in: "event: a\nevent: b\ndata: x\n\n", want: []rec{named("b", "x")}},
	{name: "empty event name is nil", in: "event:\ndata: x\n\n", want: []rec{data("x")}},
	{name: "event without data is skipped and does not leak", in: "event: ping\n\ndata: x\n\n", want: []rec{data("x")}},
	{name: "event name after data", in: "data: x\nevent: late\n\n", want: []rec{named("late", "x")}},
	{name: "id", in: "id: 7\ndata: x\n\ndata: y\n\n", want: []rec{withID("7", "x"), data("y")}},
	{name: "empty id", in: "id\ndata: x\n\n", want: []rec{withID("", "x")}},
	{name: "id with NUL ignored", in: "id: 1\nid: a\x00b\ndata: x\n\n", want: []rec{withID("1", "x")}},
	{name: "retry and unknown fields ignored", in: "retry: 100\nfoo: bar\nDATA: no\ndata : no\ndata: x\n\n", want: []rec{data("x")}},
	{name: "BOM", in: "\uFEFFdata: x\n\n", want: []rec{data("x")}},
	{name: "BOM only at start", in: "\uFEFFdata: x\n\n\uFEFFdata: y\n\n", want: []rec{data("x")}},
	{name: "second BOM not stripped", in: "\uFEFF\uFEFFdata: x\n\n", want: nil},
	{name: "partial BOM is data", in: "\xEF\xBB", want: nil},
	{name: "BOM bytes not at start", in: "data: \uFEFF\n\n", want: []rec{data("\uFEFF")}},
	{name: "flush last event without blank line", in: "data: a\n\ndata: b", want: []rec{data("a"), data("b")}},
	{name: "flush after single line ending", in: "data: a\r", want: []rec{data("a")}},
	{name: "flush event without data", in: "data: a\n\nevent: x", want: []rec{data("a")}},
	{name: "anthropic style", in: "event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\n",
		want: []rec{named("message_start", `{"type":"message_start"}`), named("ping", `{"type": "ping"}`)}},
	{name: "OpenAI stream", in: openAIStream, want: []rec{
		data(`{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`),
		data(`{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}`),
		data(`{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}`),
		data("[DONE]"),
	}},

	// Size limit. "data: " plus n bytes plus the line ending is n+7 bytes.
	{name: "cap: event exactly at limit", limit: 32, in: "data: " + strings.Repeat("x", 25) + "\n\n",
		want: []rec{data(strings.Repeat("x", 25))}},
	{name: "cap: one byte over", limit: 32, in: "data: a\n\ndata: " + strings.Repeat("x", 26) + "\n\ndata: b\n\n",
		want: []rec{data("a")}, wantErr: true},
	{name: "cap: endless line", limit: 32, in: "data: a\n\ndata: " + strings.Repeat("x", 100),
		want: []rec{data("a")}, wantErr: true},
	{name: "cap: many lines", limit: 32, in: strings.Repeat("data: ab\n", 10) + "\n",
		wantErr: true},
	{name: "cap: comments count", limit: 32, in: strings.Repeat(": keepalive\n", 3) + "data: x\n\n",
		wantErr: true},
	{name: "cap: limit applies per event", limit: 32, in: strings.Repeat("data: "+strings.Repeat("y", 20)+"\n\n", 5),
		want: []rec{data(strings.Repeat("y", 20)), data(strings.Repeat("y", 20)), data(strings.Repeat("y", 20)),
			data(strings.Repeat("y", 20)), data(strings.Repeat("y", 20))}},
}

func checkResult(t *testing.T, how string, c parseCase, got []rec, err error) {
	t.Helper()
	if !equalRecs(got, c.want) {
		t.Errorf("%s: got %s, want %s", how, fmtRecs(got), fmtRecs(c.want))
	}
	if c.wantErr != (err != nil) {
		t.Errorf("%s: err = %v, wantErr %v", how, err, c.wantErr)
	}
	if err != nil && !errors.Is(err, ErrEventTooLarge) {
		t.Errorf("%s: err = %v, want ErrEventTooLarge", how, err)
	}
}

func TestParser(t *testing.T) {
	for _, c := range parseCases {
		t.Run(c.name, func(t *testing.T) {
			in := []byte(c.in)
			if !c.wantErr && c.limit == 0 {
				if ref := refParse(c.in); !equalRecs(ref, c.want) {
					t.Errorf("reference parser disagrees with the table: %s", fmtRecs(ref))
				}
			}

			got, err := run(t, newParser(c.limit), in)
			checkResult(t, "whole", c, got, err)

			pieces := make([][]byte, len(in))
			for i := range in {
				pieces[i] = in[i : i+1]
			}
			got, err = run(t, newParser(c.limit), pieces...)
			checkResult(t, "one byte at a time", c, got, err)

			// A single parser reused through Reset for all splits also
			// checks that Reset leaves nothing behind.
			p := newParser(c.limit)
			for i := 0; i <= len(in); i++ {
				p.Reset()
				got, err = run(t, p, in[:i], in[i:])
				checkResult(t, "split at "+strconv.Itoa(i), c, got, err)
			}
		})
	}
}

func TestCRLFSplitAcrossFeeds(t *testing.T) {
	cases := []struct {
		name   string
		chunks []string
		want   []rec
	}{
		{"CR | LF is one ending", []string{"data: a\r", "\ndata: b\r\n\r\n"}, []rec{data("a\nb")}},
		{"CR | LF on the blank line", []string{"data: a\r\n\r", "\ndata: b\r\n\r\n"}, []rec{data("a"), data("b")}},
		{"CR | empty feed | LF", []string{"data: a\r", "", "\ndata: b\n\n"}, []rec{data("a\nb")}},
		{"CR | CR is two endings", []string{"data: a\r", "\rdata: b\n\n"}, []rec{data("a"), data("b")}},
		{"CR | other byte", []string{"data: a\r", "data: b\n\n"}, []rec{data("a\nb")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			chunks := make([][]byte, len(c.chunks))
			for i, s := range c.chunks {
				chunks[i] = []byte(s)
			}
			got, err := run(t, new(Parser), chunks...)
			if err != nil || !equalRecs(got, c.want) {
				t.Errorf("got %s (err %v), want %s", fmtRecs(got), err, fmtRecs(c.want))
			}
		})
	}
}

// TestCRDispatchesImmediately checks that a lone CR ending a blank line
// dispatches at once, without waiting to see whether an LF follows.
func TestCRDispatchesImmediately(t *testing.T) {
	var p Parser
	p.Feed([]byte("data: a\r\r"))
	ev, ok := p.Next()
	if !ok || string(ev.Data) != "a" {
		t.Fatalf("Next = %q, %v; want \"a\", true", ev.Data, ok)
	}
}

func TestFeedCopiesInput(t *testing.T) {
	var p Parser
	b := []byte("data: abc\n")
	p.Feed(b)
	copy(b, "XXXXXXXXXX")
	p.Feed([]byte("\n"))
	ev, ok := p.Next()
	if !ok || string(ev.Data) != "abc" {
		t.Fatalf("Next = %q, %v; want \"abc\", true", ev.Data, ok)
	}
}

func TestBuffered(t *testing.T) {
	var p Parser
	p.Feed([]byte("data: abc\n\ndata: x"))
	if got := p.Buffered(); got != 18 {
		t.Errorf("Buffered before Next = %d, want 18", got)
	}
	if _, ok := p.Next(); !ok {
		t.Fatal("no event")
	}
	if _, ok := p.Next(); ok {
		t.Fatal("unexpected event")
	}
	if got := p.Buffered(); got != 7 {
		t.Errorf("Buffered = %d, want 7", got)
	}
	p.Feed([]byte("y\ndata: z\n"))
	p.Next()
	if got := p.Buffered(); got != len("data: xy\ndata: z\n") {
		t.Errorf("Buffered = %d, want %d", got, len("data: xy\ndata: z\n"))
	}
	if _, ok := p.Flush(); !ok {
		t.Fatal("Flush returned no event")
	}
	if got := p.Buffered(); got != 0 {
		t.Errorf("Buffered after Flush = %d, want 0", got)
	}
}

func TestErrorState(t *testing.T) {
	var p Parser
	p.SetMaxEventBytes(16)
	p.Feed([]byte("data: 0123456789abcdef"))
	if _, ok := p.Next(); ok {
		t.Fatal("unexpected event")
	}
	if !errors.Is(p.Err(), ErrEventTooLarge) {
		t.Fatalf("Err = %v, want ErrEventTooLarge", p.Err())
	}
	if p.Buffered() != 0 {
		t.Errorf("Buffered after error = %d, want 0", p.Buffered())
	}
	p.Feed([]byte("\n\ndata: x\n\n"))
	if _, ok := p.Next(); ok {
		t.Error("Next returned an event after the error")
	}
	if _, ok := p.Flush(); ok {
		t.Error("Flush returned an event after the error")
	}
	p.Reset()
	if p.Err() != nil {
		t.Fatalf("Err after Reset = %v", p.Err())
	}
	p.Feed([]byte("data: x\n\n"))
	if ev, ok := p.Next(); !ok || string(ev.Data) != "x" {
		t.Fatalf("after Reset: Next = %q, %v", ev.Data, ok)
	}
	// The limit survives Reset.
	p.Feed([]byte("data: 0123456789abcdef\n\n"))
	if _, ok := p.Next(); ok || p.Err() == nil {
		t.Fatalf("limit not kept across Reset")
	}
}

func TestDefaultLimit(t *testing.T) {
	var p Parser
	line := make([]byte, 1<<20)
	for i := range line {
		line[i] = 'x'
	}
	p.Feed([]byte("data: "))
	for i := 0; i < 7; i++ {
		p.Feed(line)
		if _, ok := p.Next(); ok || p.Err() != nil {
			t.Fatalf("after %d MiB: ok=%v err=%v", i+1, ok, p.Err())
		}
	}
	p.Feed(line)
	p.Next()
	if !errors.Is(p.Err(), ErrEventTooLarge) {
		t.Fatalf("Err = %v after 8 MiB, want ErrEventTooLarge", p.Err())
	}
}

// normalize turns CRLF and lone CR into LF.
func normalize(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}

func TestAppendData(t *testing.T) {
	cases := []struct{ name, payload, want string }{
		{"simple", "hello", "data: hello\n\n"},
		{"empty", "", "data: \n\n"},
		{"LF", "a\nb", "data: a\ndata: b\n\n"},
		{"CRLF", "a\r\nb", "data: a\ndata: b\n\n"},
		{"CR", "a\rb", "data: a\ndata: b\n\n"},
		{"LF CR is two breaks", "a\n\rb", "data: a\ndata: \ndata: b\n\n"},
		{"trailing newline", "a\n", "data: a\ndata: \n\n"},
		{"leading space", " a", "data:  a\n\n"},
		{"json", `{"x":1}`, "data: {\"x\":1}\n\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := AppendData([]byte("prefix:"), []byte(c.payload))
			if string(got) != "prefix:"+c.want {
				t.Errorf("got %q, want %q", got, "prefix:"+c.want)
			}
			checkRoundTrip(t, []byte(c.payload))
		})
	}
}

func checkRoundTrip(t *testing.T, payload []byte) {
	t.Helper()
	frame := AppendData(nil, payload)
	var p Parser
	p.Feed(frame)
	ev, ok := p.Next()
	if !ok {
		t.Fatalf("AppendData(%q) = %q: parser returned no event", payload, frame)
	}
	if want := normalize(string(payload)); string(ev.Data) != want {
		t.Fatalf("AppendData(%q) = %q: parsed %q, want %q", payload, frame, ev.Data, want)
	}
	if ev.Name != nil || ev.ID != nil {
		t.Fatalf("AppendData(%q): unexpected name %q or id %q", payload, ev.Name, ev.ID)
	}
	if _, ok := p.Next(); ok {
		t.Fatalf("AppendData(%q) = %q: more than one event", payload, frame)
	}
	if p.Buffered() != 0 {
		t.Fatalf("AppendData(%q) = %q: %d bytes left over", payload, frame, p.Buffered())
	}
}

func TestRoundTripProperty(t *testing.T) {
	// Every string up to length 6 over an alphabet of line-break and
	// SSE-significant bytes.
	alphabet := []byte{'a', ' ', ':', '\r', '\n'}
	var gen func(prefix []byte, n int)
	gen = func(prefix []byte, n int) {
		checkRoundTrip(t, prefix)
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			gen(append(prefix, c), n-1)
		}
	}
	gen(nil, 6)
}

func TestZeroAllocs(t *testing.T) {
	var p Parser
	chunk := []byte(openAIChunk)
	// Warm up the buffers.
	for i := 0; i < 4; i++ {
		p.Feed(chunk)
		for _, ok := p.Next(); ok; _, ok = p.Next() {
		}
	}
	allocs := testing.AllocsPerRun(1000, func() {
		// Split the chunk so the partial-line path runs too.
		p.Feed(chunk[:100])
		p.Next()
		p.Feed(chunk[100:])
		if _, ok := p.Next(); !ok {
			panic("no event")
		}
		p.Next()
	})
	if allocs != 0 {
		t.Errorf("Parser: %v allocs per event, want 0", allocs)
	}

	dst := make([]byte, 0, 1024)
	payload := []byte("line one\r\nline two\nline three\rend")
	allocs = testing.AllocsPerRun(1000, func() {
		dst = AppendData(dst[:0], payload)
	})
	if allocs != 0 {
		t.Errorf("AppendData: %v allocs, want 0", allocs)
	}
}

// splitByCuts feeds data in pieces whose sizes come from cuts.
func splitByCuts(data, cuts []byte) [][]byte {
	var pieces [][]byte
	for i := 0; len(data) > 0; i++ {
		n := len(data)
		if len(cuts) > 0 {
			n = int(cuts[i%len(cuts)]) % 17 // zero-length feeds are allowed
			if i >= 4*len(data)+len(cuts) {
				n = len(data) // make sure the loop ends
			}
		}
		n = min(n, len(data))
		pieces = append(pieces, data[:n])
		data = data[n:]
	}
	return pieces
}

func FuzzParser(f *testing.F) {
	for _, c := range parseCases {
		f.Add([]byte(c.in), []byte{1, 5, 0, 3}, uint16(c.limit))
	}
	f.Add([]byte("data: a\r\n\r\n"), []byte{8}, uint16(0))
	f.Add([]byte("\xEF\xBB\xBFdata: a\r"), []byte{1, 1, 1, 16}, uint16(0))
	f.Add([]byte(openAIStream), []byte{7, 200, 13}, uint16(40))

	f.Fuzz(func(t *testing.T, data, cuts []byte, limit uint16) {
		whole, wholeErr := run(t, newParser(int(limit)), data)

		got, err := run(t, newParser(int(limit)), splitByCuts(data, cuts)...)
		if !equalRecs(got, whole) || (err == nil) != (wholeErr == nil) {
			t.Fatalf("pieces %s (err %v) != whole %s (err %v)", fmtRecs(got), err, fmtRecs(whole), wholeErr)
		}

		// Every event returned before an error is also what the
		// reference parser returns.
		ref := refParse(string(data))
		if wholeErr == nil {
			if !equalRecs(whole, ref) {
				t.Fatalf("parser %s != reference %s", fmtRecs(whole), fmtRecs(ref))
			}
		} else if len(whole) > len(ref) || !equalRecs(whole, ref[:len(whole)]) {
			t.Fatalf("parser %s (err %v) is not a prefix of reference %s", fmtRecs(whole), wholeErr, fmtRecs(ref))
		}
	})
}

func FuzzAppendDataRoundTrip(f *testing.F) {
	for _, s := range []string{"", "x", "a\nb", "a\r\nb", "a\rb", "\r", "\n\n", " :x", openAIChunk} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		checkRoundTrip(t, payload)
		out := AppendData([]byte("keep"), payload)
		if !bytes.HasPrefix(out, []byte("keep")) {
			t.Fatalf("AppendData lost dst contents: %q", out)
		}
		if bytes.IndexByte(out, '\r') >= 0 {
			t.Fatalf("AppendData output contains CR: %q", out)
		}
	})
}

func BenchmarkParserOpenAIChunk(b *testing.B) {
	chunk := []byte(openAIChunk)
	var p Parser
	b.ReportAllocs()
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		p.Feed(chunk)
		ev, ok := p.Next()
		if !ok || len(ev.Data) != len(chunk)-len("data: \n\n") {
			b.Fatal("bad event")
		}
		if _, ok := p.Next(); ok {
			b.Fatal("extra event")
		}
	}
}

func BenchmarkAppendData(b *testing.B) {
	payload := []byte(openAIChunk[len("data: ") : len(openAIChunk)-2])
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		dst = AppendData(dst[:0], payload)
	}
}
