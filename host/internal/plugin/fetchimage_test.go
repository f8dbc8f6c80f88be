package plugin_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/llm-proxy/llm-proxy/host/internal/egress"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/host/internal/testplugins"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// imageEgress is a stream's egress: upstream requests answered in memory
// (and kept), image fetches through a real egress.Client.
type imageEgress struct {
	*egress.Client
	allow  bool // the operator's grant
	answer []byte
	mu     sync.Mutex
	sent   [][]byte
}

func (e *imageEgress) ImageFetchAllowed() bool { return e.allow }

func (e *imageEgress) Do(req *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(req.Body)
	e.mu.Lock()
	e.sent = append(e.sent, body)
	e.mu.Unlock()
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(e.answer))}, nil
}

// TestFetchImageThroughThePlugin: gemini.wasm names an image by URL, the
// host downloads it with egress.FetchImage (no credential sent) and hands
// it to the plugin, which sends it inline. Image fetches reach public
// addresses only; the egress client here is given a transport of the
// test's own so that it can reach the loopback image server.
func TestFetchImageThroughThePlugin(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")
	var auth sync.Map
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.URL.Path, r.Header.Get("Authorization")+r.Header.Get("x-goog-api-key"))
		w.Header().Set("Content-Type", "image/png")
		w.Write(png)
	}))
	defer img.Close()
	c, err := egress.New(egress.Options{BaseURL: "https://generativelanguage.example", Secret: "secret",
		Auth:      egress.Auth{Type: "header", Name: "x-goog-api-key", Format: "{key}"},
		Transport: http.DefaultTransport.(*http.Transport).Clone()})
	if err != nil {
		t.Fatal(err)
	}
	eg := &imageEgress{Client: c, allow: true, answer: []byte(`{"candidates":[{"content":{"role":"model","parts":[{"text":"a cat"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2,"totalTokenCount":5},"modelVersion":"gemini-x"}`)}
	v := load(t, "plugins/gemini", plugin.Limits{})
	rec := newRecorder()
	req := `{"model":"gemini-x","messages":[{"role":"user","content":[{"type":"text","text":"what is it"},` +
		`{"type":"image_url","image_url":{"url":"` + img.URL + `/cat.png"}}]}]}`
	if _, err := v.Open(plugin.Invocation{Op: abi.OpChat, Request: []byte(req), Config: guestConfig("https://generativelanguage.example/v1beta"),
		Egress: eg, Sink: rec}); err != nil {
		t.Fatal(err)
	}
	if err := rec.wait(t); err != nil {
		t.Fatalf("stream ended with %v; emits %v", err, rec.snapshot())
	}
	if e := rec.snapshot(); len(e) != 1 || e[0].Kind != "body" || !strings.Contains(string(e[0].Data), "a cat") {
		t.Fatalf("emits %v", e)
	}
	if len(eg.sent) != 1 {
		t.Fatalf("%d upstream requests", len(eg.sent))
	}
	part := gjson.GetBytes(eg.sent[0], "contents.0.parts.1.inlineData")
	if part.Get("mimeType").String() != "image/png" || part.Get("data").String() != base64.StdEncoding.EncodeToString(png) {
		t.Fatalf("image not inline: %s", eg.sent[0])
	}
	if a, ok := auth.Load("/cat.png"); !ok || a.(string) != "" {
		t.Fatalf("image fetch: seen %v, credentials %q", ok, a)
	}
}

// TestFetchImageGrant: a plugin may fetch an image only if its manifest
// asks for fetch_image, the operator allows it for the provider, and the
// client's request links to that very URL; and at most MaxImageFetches
// per stream. The hostile plugin's exfil mode tries a URL of its own,
// then the request's image 40 times.
func TestFetchImageGrant(t *testing.T) {
	var fetched sync.Map
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Store(r.URL.String(), true)
		w.Header().Set("Content-Type", "image/png")
		w.Write([]byte("\x89PNG\r\n\x1a\n"))
	}))
	defer img.Close()
	c, err := egress.New(egress.Options{BaseURL: "https://provider.example", Transport: http.DefaultTransport.(*http.Transport).Clone()})
	if err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(testplugins.Build(t, "host/internal/testplugins/hostile"))
	if err != nil {
		t.Fatal(err)
	}
	// The same plugin with a manifest that does not ask for fetch_image.
	var m abi.Manifest
	raw, _ := abi.ManifestFromWasm(wasm)
	json.Unmarshal(raw, &m)
	m.Capabilities = slices.DeleteFunc(m.Capabilities, func(c string) bool { return c == abi.CapFetchImage })
	raw, _ = json.Marshal(m)
	unasked, err := abi.WithManifest(wasm, raw)
	if err != nil {
		t.Fatal(err)
	}

	req := `{"model":"exfil","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"` + img.URL + `/cat.png"}}]}]}`
	statuses := func(wasm []byte, allow bool) string {
		v, err := plugin.Load(context.Background(), wasm, plugin.LoadOptions{File: "hostile.wasm", Cache: cache(),
			Limits: plugin.Limits{MaxHTTPHandles: 64}}) // handles do not cap the fetches here
		if err != nil {
			t.Fatal(err)
		}
		defer v.Retire()
		rec := newRecorder()
		if _, err := v.Open(plugin.Invocation{Op: abi.OpChat, Request: []byte(req), Config: guestConfig("https://provider.example"),
			Egress: &imageEgress{Client: c, allow: allow}, Sink: rec}); err != nil {
			t.Fatal(err)
		}
		rec.wait(t)
		e := rec.snapshot()
		if len(e) != 1 {
			t.Fatalf("emits %v", e)
		}
		return string(e[0].Data)
	}
	denied, limit := strconv.Itoa(int(abi.StatusDenied)), strconv.Itoa(int(abi.StatusLimit))
	want := "exfil " + denied + strings.Repeat(" 1", plugin.MaxImageFetches) + strings.Repeat(" "+limit, 40-plugin.MaxImageFetches)
	if got := statuses(wasm, true); got != want {
		t.Errorf("granted:\n got %s\nwant %s", got, want)
	}
	want = "exfil" + strings.Repeat(" "+denied, 41)
	if got := statuses(wasm, false); got != want {
		t.Errorf("not granted by the operator:\n got %s\nwant %s", got, want)
	}
	if got := statuses(unasked, true); got != want {
		t.Errorf("not asked for in the manifest:\n got %s\nwant %s", got, want)
	}
	fetched.Range(func(k, _ any) bool {
		if k != "/cat.png" {
			t.Errorf("fetched %v", k)
		}
		return true
	})
}
