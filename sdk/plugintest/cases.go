package plugintest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// Case is a golden translation fixture: a unified request, the upstream's
// recorded answer, what the plugin must send upstream and what it must emit.
// One file holds one case, as sections that start with a "-- name --" line:
//
//	-- op --
//	chat_stream
//	-- request --
//	{"model":"gpt-4o-mini","messages":[...],"stream":true}
//	-- upstream --
//	HTTP 200
//	Content-Type: text/event-stream
//
//	data: {...}
//	-- want upstream --
//	POST /v1/chat/completions
//	Authorization: Bearer test-key
//
//	{"model":"gpt-4o-mini",...}
//	-- want emits --
//	chunk {...}
//	fail 429 {...}
//
// Emits are compared byte for byte; an emit whose data holds a line break
// continues on the next line, which starts with "| ". The upstream request
// body is compared by value when it is JSON, byte for byte otherwise. Header
// lines under "want upstream" must be present; others are not checked.
//
// The upstream body is written one SSE event (up to a blank line) at a time,
// with a flush after each. The marker <<flush>> inside the body is removed
// and cuts it there too, with a short pause before the rest, so a case can
// make an event arrive in pieces across reads.
type Case struct {
	Name     string
	Op       abi.Op
	Request  []byte
	Upstream struct {
		Status  int
		Headers [][2]string
		Body    []byte
	}
	WantMethod, WantPath string
	WantHeaders          [][2]string
	WantBody             []byte
	WantEmits            []string
}

// LoadCases reads every *.case file in dir, sorted by name.
func LoadCases(dir string) ([]*Case, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.case"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var cases []*Case
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		c, err := ParseCase(strings.TrimSuffix(filepath.Base(f), ".case"), b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		cases = append(cases, c)
	}
	return cases, nil
}

var ops = map[string]abi.Op{"chat": abi.OpChat, "chat_stream": abi.OpChatStream, "embeddings": abi.OpEmbeddings, "models": abi.OpModels, "messages": abi.OpMessages, "messages_stream": abi.OpMessagesStream}

// ParseCase decodes one case file.
func ParseCase(name string, b []byte) (*Case, error) {
	sections := map[string][]byte{}
	var cur string
	for _, line := range bytes.SplitAfter(b, []byte{'\n'}) {
		t := bytes.TrimSpace(line)
		if bytes.HasPrefix(t, []byte("-- ")) && bytes.HasSuffix(t, []byte(" --")) && len(t) > 6 {
			cur = string(t[3 : len(t)-3])
			sections[cur] = []byte{}
			continue
		}
		if cur != "" {
			sections[cur] = append(sections[cur], line...)
		}
	}
	c := &Case{Name: name}
	op, ok := ops[strings.TrimSpace(string(sections["op"]))]
	if !ok {
		return nil, fmt.Errorf("section op: want one of chat, chat_stream, embeddings, models")
	}
	c.Op = op
	c.Request = bytes.TrimSpace(sections["request"])

	head, body, _ := bytes.Cut(sections["upstream"], []byte("\n\n"))
	lines := strings.Split(strings.TrimSpace(string(head)), "\n")
	status, err := strconv.Atoi(strings.TrimPrefix(lines[0], "HTTP "))
	if err != nil {
		return nil, fmt.Errorf("section upstream: first line must be \"HTTP <status>\"")
	}
	c.Upstream.Status = status
	c.Upstream.Headers = parseHeaderLines(lines[1:])
	c.Upstream.Body = body

	head, body, _ = bytes.Cut(sections["want upstream"], []byte("\n\n"))
	lines = strings.Split(strings.TrimSpace(string(head)), "\n")
	if m, p, ok := strings.Cut(lines[0], " "); ok {
		c.WantMethod, c.WantPath = m, p
	}
	c.WantHeaders = parseHeaderLines(lines[1:])
	c.WantBody = bytes.TrimSpace(body)

	for _, l := range strings.Split(string(sections["want emits"]), "\n") {
		if rest, ok := strings.CutPrefix(l, "| "); ok && len(c.WantEmits) > 0 {
			c.WantEmits[len(c.WantEmits)-1] += "\n" + strings.TrimRight(rest, " \t\r")
			continue
		}
		if l = strings.TrimSpace(l); l != "" {
			c.WantEmits = append(c.WantEmits, l)
		}
	}
	return c, nil
}

func parseHeaderLines(lines []string) [][2]string {
	var hs [][2]string
	for _, l := range lines {
		if k, v, ok := strings.Cut(l, ":"); ok {
			hs = append(hs, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	}
	return hs
}

// Recorded is a request the fake upstream of a case received.
type Recorded struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// Upstream is a loopback server replaying a case's upstream answer.
type Upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []Recorded
}

// Requests returns what the upstream received.
func (u *Upstream) Requests() []Recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Recorded(nil), u.reqs...)
}

// StartUpstream serves the case's upstream answer. A body with SSE events is
// written one event at a time with a flush after each, so plugins see
// events arrive across reads.
func (c *Case) StartUpstream() *Upstream {
	u := &Upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, Recorded{Method: r.Method, Path: r.URL.RequestURI(), Header: r.Header.Clone(), Body: body})
		u.mu.Unlock()
		for _, h := range c.Upstream.Headers {
			w.Header().Add(h[0], h[1])
		}
		w.WriteHeader(c.Upstream.Status)
		f, _ := w.(http.Flusher)
		for i, piece := range bytes.Split(c.Upstream.Body, flushMarker) {
			if i > 0 {
				time.Sleep(20 * time.Millisecond)
			}
			for _, part := range bytes.SplitAfter(piece, []byte("\n\n")) {
				w.Write(part)
				if f != nil {
					f.Flush()
				}
			}
		}
	}))
	return u
}

// flushMarker cuts an upstream body between two writes (see Case).
var flushMarker = []byte("<<flush>>")

// Check compares what the upstream received and what was emitted with the
// case's expectations and returns every difference.
func (c *Case) Check(u *Upstream, emits []Emit) []string {
	var diffs []string
	if c.WantMethod != "" {
		reqs := u.Requests()
		if len(reqs) != 1 {
			diffs = append(diffs, fmt.Sprintf("upstream got %d requests, want 1", len(reqs)))
		} else {
			r := reqs[0]
			if r.Method != c.WantMethod || r.Path != c.WantPath {
				diffs = append(diffs, fmt.Sprintf("upstream request %s %s, want %s %s", r.Method, r.Path, c.WantMethod, c.WantPath))
			}
			for _, h := range c.WantHeaders {
				if got := r.Header.Get(h[0]); got != h[1] {
					diffs = append(diffs, fmt.Sprintf("upstream header %s = %q, want %q", h[0], got, h[1]))
				}
			}
			if len(c.WantBody) > 0 && !sameJSONOrBytes(r.Body, c.WantBody) {
				diffs = append(diffs, fmt.Sprintf("upstream body:\n got %s\nwant %s", r.Body, c.WantBody))
			}
		}
	}
	n := max(len(emits), len(c.WantEmits))
	for i := 0; i < n; i++ {
		var got, want string
		if i < len(emits) {
			got = emits[i].String()
		}
		if i < len(c.WantEmits) {
			want = c.WantEmits[i]
		}
		if !sameEmit(got, want) {
			diffs = append(diffs, fmt.Sprintf("emit %d:\n got %s\nwant %s", i, got, want))
		}
	}
	return diffs
}

// sameEmit compares an emit with its expectation byte for byte: a plugin
// must send exactly what it sent when the case was written, key order and
// spacing included.
func sameEmit(got, want string) bool {
	gk, gp := splitEmit(got)
	wk, wp := splitEmit(want)
	return gk == wk && strings.TrimSpace(gp) == strings.TrimSpace(wp)
}

// splitEmit separates "chunk {...}" or "fail 429 {...}" into kind and payload.
func splitEmit(s string) (string, string) {
	k, p, _ := strings.Cut(s, " ")
	if k == "fail" {
		st, rest, _ := strings.Cut(p, " ")
		return k + " " + st, rest
	}
	return k, p
}

func sameJSONOrBytes(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil {
		xa, _ := json.Marshal(x)
		ya, _ := json.Marshal(y)
		return bytes.Equal(xa, ya)
	}
	return bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b))
}
