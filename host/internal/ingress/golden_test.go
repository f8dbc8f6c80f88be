package ingress

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

var update = flag.Bool("update", false, "rewrite the want sections of testdata/*.case from what the code does")

// A golden case is a file of sections, each opened by a "-- name --" line:
//
//	-- kind --      what is translated (the switch in run below)
//	-- in --        a request, a chat.completion, or chat chunks one per line
//	-- end --       streams: "ok", or "fail <status> <code> <message>"
//	-- want --      the translation: JSON (compared by value) or, for
//	                streams, the SSE text (compared byte for byte)
//	-- want error --  instead of want: "<param>: <part of the message>"
//
// Run with -update to write the want sections, then read the diff.
type goldenCase struct {
	sections map[string]string
	order    []string
}

func readCase(t *testing.T, path string) *goldenCase {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := &goldenCase{sections: map[string]string{}}
	var name string
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if s := strings.TrimSpace(line); strings.HasPrefix(s, "-- ") && strings.HasSuffix(s, " --") {
			name = strings.TrimSuffix(strings.TrimPrefix(s, "-- "), " --")
			c.order = append(c.order, name)
			continue
		}
		c.sections[name] += line
	}
	return c
}

func (c *goldenCase) write(path string) error {
	var b strings.Builder
	for _, name := range c.order {
		b.WriteString("-- " + name + " --\n")
		s := c.sections[name]
		if !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		b.WriteString(s)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func TestGolden(t *testing.T) {
	paths, _ := filepath.Glob("testdata/*.case")
	if len(paths) == 0 {
		t.Fatal("no golden cases")
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".case"), func(t *testing.T) {
			c := readCase(t, path)
			got, bad := run(t, c)
			if !gjson.ValidBytes(got) && !strings.HasPrefix(c.kind(), "stream") && bad == nil {
				t.Fatalf("not JSON: %s", got)
			}
			if strings.HasPrefix(c.kind(), "stream") {
				checkEvents(t, got)
			}
			if *update {
				delete(c.sections, "want")
				delete(c.sections, "want error")
				c.order = slicesWithout(c.order, "want", "want error")
				if bad != nil {
					c.order = append(c.order, "want error")
					c.sections["want error"] = bad.Param + ": " + bad.Message + "\n"
				} else {
					c.order = append(c.order, "want")
					c.sections["want"] = pretty(c.kind(), got)
				}
				if err := c.write(path); err != nil {
					t.Fatal(err)
				}
				return
			}
			if want, ok := c.sections["want error"]; ok {
				param, msg, _ := strings.Cut(strings.TrimSpace(want), ": ")
				if bad == nil || bad.Param != param || !strings.Contains(bad.Message, msg) {
					t.Fatalf("got %v (%s), want the error %q", bad, got, want)
				}
				return
			}
			if bad != nil {
				t.Fatalf("unexpected error %v", bad)
			}
			want := c.sections["want"]
			if strings.HasPrefix(c.kind(), "stream") {
				if string(got) != want {
					t.Fatalf("got\n%s\nwant\n%s", got, want)
				}
				return
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("%v: %s", err, got)
			}
			if err := json.Unmarshal([]byte(want), &w); err != nil {
				t.Fatalf("want: %v", err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("got\n%s\nwant\n%s", pretty("", got), want)
			}
		})
	}
}

func (c *goldenCase) kind() string { return strings.TrimSpace(c.sections["kind"]) }

// run translates the case's input.
func run(t *testing.T, c *goldenCase) ([]byte, *BadRequest) {
	in := strings.TrimSpace(c.sections["in"])
	switch c.kind() {
	case "messages request":
		m, bad := ParseMessages(gjson.Parse(in), false)
		if bad != nil {
			return nil, bad
		}
		return m.Chat, m.Untranslatable
	case "count_tokens request":
		m, bad := ParseMessages(gjson.Parse(in), true)
		if bad != nil {
			return nil, bad
		}
		return m.Chat, nil
	case "messages response":
		out, _ := ChatToMessage([]byte(in), "client-model", "msg_1")
		return out, nil
	case "responses request":
		r, bad := ParseResponses(gjson.Parse(in), strings.TrimSpace(c.sections["previous"]))
		if bad != nil {
			return nil, bad
		}
		return r.Chat, nil
	case "responses response":
		req, _ := ParseResponses(gjson.Parse(c.request()), "")
		out, _ := NewResponses(req, "resp_1", 1700000000, false).FromChat([]byte(in))
		return out, nil
	case "stream messages":
		return stream(t, c, NewMessagesStream("msg_1", "client-model")), nil
	case "stream native messages":
		return stream(t, c, &NativeMessagesStream{}), nil
	case "stream responses":
		req, bad := ParseResponses(gjson.Parse(c.request()), "")
		if bad != nil {
			t.Fatal(bad)
		}
		return stream(t, c, NewResponsesStream(NewResponses(req, "resp_1", 1700000000, false))), nil
	}
	t.Fatalf("unknown kind %q", c.kind())
	return nil, nil
}

// request is the client request of a response or stream case.
func (c *goldenCase) request() string {
	if r, ok := c.sections["request"]; ok {
		return r
	}
	return `{"model":"client-model","input":"hi"}`
}

type streamEncoder interface {
	Chunk(dst, chunk []byte) []byte
	End(dst []byte) []byte
	Fail(dst []byte, status int, code, message string) []byte
}

func stream(t *testing.T, c *goldenCase, e streamEncoder) []byte {
	var out []byte
	for _, line := range strings.Split(strings.TrimSpace(c.sections["in"]), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			// "\n" written out in a line stands for a line break inside
			// the chunk.
			out = e.Chunk(out, []byte(strings.ReplaceAll(line, `\n`, "\n")))
		}
	}
	end := strings.TrimSpace(c.sections["end"])
	if rest, ok := strings.CutPrefix(end, "fail "); ok {
		f := strings.SplitN(rest, " ", 3)
		status, _ := strconv.Atoi(f[0])
		return e.Fail(out, status, f[1], f[2])
	}
	return e.End(out)
}

// checkEvents checks that a stream's output is well-formed SSE: each
// event an event: line and data: lines; data that is JSON holds a type
// that names the event.
func checkEvents(t *testing.T, sse []byte) {
	t.Helper()
	for _, ev := range bytes.Split(bytes.TrimSuffix(sse, []byte("\n\n")), []byte("\n\n")) {
		lines := bytes.Split(ev, []byte("\n"))
		name, ok := bytes.CutPrefix(lines[0], []byte("event: "))
		var data [][]byte
		for _, l := range lines[1:] {
			d, isData := bytes.CutPrefix(l, []byte("data: "))
			ok = ok && isData
			data = append(data, d)
		}
		if !ok || len(data) == 0 {
			t.Fatalf("malformed event %q", ev)
		}
		if d := bytes.Join(data, []byte("\n")); gjson.ValidBytes(d) {
			if typ := gjson.GetBytes(d, "type").Str; typ != string(name) {
				t.Fatalf("event %s holds type %q", name, typ)
			}
		}
	}
}

func pretty(kind string, b []byte) string {
	if strings.HasPrefix(kind, "stream") {
		return string(b)
	}
	var buf bytes.Buffer
	if json.Indent(&buf, b, "", "  ") != nil {
		return string(b) + "\n"
	}
	return buf.String() + "\n"
}

func slicesWithout(s []string, drop ...string) []string {
	var out []string
	for _, v := range s {
		keep := true
		for _, d := range drop {
			keep = keep && v != d
		}
		if keep {
			out = append(out, v)
		}
	}
	return out
}
