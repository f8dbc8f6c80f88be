package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/plugintest"
)

// streamCase is one stream: its request, the Date of the upstream's answer
// and the data of the upstream's events, or, for a chat (whole), its body.
type streamCase struct {
	name    string
	whole   bool
	request string
	date    string
	events  []string
}

func (c streamCase) op() abi.Op {
	if c.whole {
		return abi.OpChat
	}
	return abi.OpChatStream
}

// Three chat_streams that differ in everything a streamer keeps: the model
// (requested or from modelVersion), the response id (in the chunk ids and
// the tool call ids), created, the choices used, the usage, and how they
// end; and a chat, whose answer comes whole between their events.
var interleaved = []streamCase{
	{
		name:    "tool call, requested model",
		request: `{"model":"gemini-a","messages":[{"role":"user","content":"weather in Paris?"}],"stream":true}`,
		date:    "Tue, 14 Nov 2023 22:13:20 GMT",
		events: []string{
			`{"candidates":[{"content":{"role":"model","parts":[{"text":"Let me "}]},"index":0}],"usageMetadata":{"promptTokenCount":11,"totalTokenCount":11},"responseId":"resp-A"}`,
			`{"candidates":[{"content":{"role":"model","parts":[{"text":"check."}]},"index":0}],"usageMetadata":{"promptTokenCount":11,"candidatesTokenCount":3,"totalTokenCount":14},"responseId":"resp-A"}`,
			`{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"c2lnQQ=="}]},"index":0}],"responseId":"resp-A"}`,
			`{"candidates":[{"content":{"role":"model","parts":[{"text":""}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":11,"candidatesTokenCount":9,"thoughtsTokenCount":4,"totalTokenCount":24},"responseId":"resp-A"}`,
		},
	},
	{
		name:    "two candidates, modelVersion",
		request: `{"model":"gemini-b","messages":[{"role":"system","content":"terse"},{"role":"user","content":"two words"}],"n":2,"stream":true}`,
		date:    "Wed, 15 Nov 2023 08:00:00 GMT",
		events: []string{
			`{"candidates":[{"content":{"role":"model","parts":[{"text":"Hello"}]},"index":0},{"content":{"role":"model","parts":[{"text":"Good"}]},"index":1}],"modelVersion":"gemini-b-001","responseId":"resp-B"}`,
			`{"candidates":[{"content":{"role":"model","parts":[{"text":" there"}]},"index":0}],"modelVersion":"gemini-b-001","responseId":"resp-B"}`,
			`{"candidates":[{"content":{"role":"model","parts":[{"text":" day"}]},"index":1}],"modelVersion":"gemini-b-001","responseId":"resp-B"}`,
			`{"candidates":[{"content":{"role":"model","parts":[{"thought":true,"text":"hmm"},{"text":"!"}]},"finishReason":"MAX_TOKENS","index":0}],"modelVersion":"gemini-b-001","responseId":"resp-B"}`,
			`{"candidates":[{"content":{"role":"model","parts":[{"text":"."}]},"index":1}],"modelVersion":"gemini-b-001","responseId":"resp-B"}`,
			`{"candidates":[{"finishReason":"STOP","index":1}],"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":5,"cachedContentTokenCount":2,"totalTokenCount":12},"modelVersion":"gemini-b-001","responseId":"resp-B"}`,
		},
	},
	{
		name:    "error event",
		request: `{"model":"gemini-c","messages":[{"role":"user","content":"Hi"}],"stream":true}`,
		date:    "Thu, 16 Nov 2023 12:30:00 GMT",
		events: []string{
			`{"candidates":[{"content":{"role":"model","parts":[{"text":"Par"}]},"index":0}]}`,
			`{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}`,
			`{"candidates":[{"content":{"role":"model","parts":[{"text":"never read"}]},"index":0}]}`,
		},
	},
	{
		name:    "chat, requested model",
		whole:   true,
		request: `{"model":"gemini-d","messages":[{"role":"user","content":"Hi"}],"max_tokens":5}`,
		date:    "Fri, 17 Nov 2023 18:45:10 GMT",
		events: []string{
			`{"candidates":[{"content":{"role":"model","parts":[{"text":"Hello!"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":2,"totalTokenCount":4},"responseId":"resp-D"}`,
		},
	},
}

// loneRun runs one stream alone with plugintest and returns what it
// emitted and the upstream request it made ("METHOD path\n\nbody").
func loneRun(t *testing.T, c streamCase) (*plugintest.Result, string) {
	t.Helper()
	var mu sync.Mutex
	var sent string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		sent = r.Method + " " + r.URL.RequestURI() + "\n\n" + string(body)
		mu.Unlock()
		w.Header().Set("Date", c.date)
		if c.whole {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, c.events[0])
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range c.events {
			fmt.Fprintf(w, "data: %s\n\n", ev)
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	res := plugintest.Run(plugin{}, c.op(), []byte(c.request), plugintest.Options{Provider: "gemini", BaseURL: srv.URL + "/v1beta"})
	mu.Lock()
	defer mu.Unlock()
	return res, sent
}

// TestInterleavedStreams runs the streams of interleaved on one guest,
// their callbacks interleaved as the host interleaves streams on an
// instance, and checks that each emits exactly what it emits alone: no
// state of one stream leaks into another.
func TestInterleavedStreams(t *testing.T) {
	const base = "http://upstream.test/v1beta"
	h := &fakeHost{config: []byte(`{"provider":"gemini","base_url":"` + base + `","options":{}}`), record: true}
	g := sdk.NewGuest(h, plugin{})

	n := len(interleaved)
	ids := make([]int32, n)
	handles := make([]int32, n)
	for i, c := range interleaved {
		ids[i] = int32(i + 1)
		if handles[i] = h.start(g, ids[i], c.op(), []byte(c.request)); handles[i] == 0 {
			t.Fatalf("%s: no upstream request; emits %v", c.name, h.streams[ids[i]].emits)
		}
	}
	for i, c := range interleaved {
		h.date = []byte(c.date)
		want := abi.BodyEvents
		if c.whole {
			want = abi.BodyWhole
		}
		if mode := h.head(g, handles[i], 200); mode != want {
			t.Fatalf("%s: body mode %d", c.name, mode)
		}
	}
	h.date = nil
	// Round robin over the events; a stream's body ends right after its
	// last event, while the others go on.
	for k := 0; ; k++ {
		more := false
		for i, c := range interleaved {
			if k < len(c.events) {
				more = true
				h.deliver(g, handles[i], []byte(c.events[k]))
				if h.streams[ids[i]].ended {
					h.done(g, ids[i])
				}
			}
			if k == len(c.events)-1 {
				h.end(g, handles[i])
			}
		}
		if !more {
			break
		}
	}
	if g.Streams() != 0 {
		t.Errorf("the guest still holds %d streams", g.Streams())
	}

	for i, c := range interleaved {
		t.Run(c.name, func(t *testing.T) {
			alone, sent := loneRun(t, c)
			if len(alone.Emits) == 0 || alone.Emits[0].Kind == "abort" || !c.whole && len(alone.Emits) < 2 {
				t.Fatalf("the lone run emitted %v", alone.Emits)
			}
			st := &h.streams[ids[i]]
			if st.finished != alone.Finished {
				t.Errorf("finished %v, alone %v", st.finished, alone.Finished)
			}
			if len(st.sent) != 1 || strings.TrimPrefix(st.sent[0], "POST "+base) != strings.TrimPrefix(sent, "POST /v1beta") {
				t.Errorf("upstream request\n%q\nalone\n%q", st.sent, sent)
			}
			if len(st.emits) != len(alone.Emits) {
				t.Errorf("%d emits, alone %d", len(st.emits), len(alone.Emits))
			}
			for j := 0; j < len(st.emits) || j < len(alone.Emits); j++ {
				var got, want string
				if j < len(st.emits) {
					got = st.emits[j].String()
				}
				if j < len(alone.Emits) {
					want = alone.Emits[j].String()
				}
				if got != want {
					t.Errorf("emit %d\ngot   %s\nalone %s", j, got, want)
				}
			}
		})
	}
}

// TestFetchedImagesRepeated: a request with two image URLs, one of them
// given twice, is translated after the host fetched each URL once, with
// the parts in the request's order.
func TestFetchedImagesRepeated(t *testing.T) {
	var mu sync.Mutex
	hits := map[string]int{}
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		mu.Unlock()
		switch r.URL.Path {
		case "/cat.png":
			w.Header().Set("Content-Type", "image/png")
			w.Write([]byte("\x89PNG\r\n\x1a\n"))
		case "/dog.jpg":
			w.Header().Set("Content-Type", "image/jpeg")
			w.Write([]byte("\xff\xd8\xff\xe0"))
		default:
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html></html>"))
		}
	}))
	defer img.Close()
	cat, dog := img.URL+"/cat.png", img.URL+"/dog.jpg"
	for _, op := range []string{"chat", "chat_stream"} {
		t.Run(op, func(t *testing.T) {
			clear(hits)
			want := `body {"id":"chatcmpl-gemini","object":"chat.completion","created":1700000000,"model":"gemini-x","choices":[{"index":0,"message":{"role":"assistant","content":"a cat and a dog","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":600,"completion_tokens":5,"total_tokens":605,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}`
			upstream := "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"a cat and a dog\"}]},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":600,\"candidatesTokenCount\":5,\"totalTokenCount\":605}}"
			method, ctype := "generateContent", "application/json"
			if op == "chat_stream" {
				want = `chunk {"id":"chatcmpl-gemini","object":"chat.completion.chunk","created":1700000000,"model":"gemini-x","choices":[{"index":0,"delta":{"role":"assistant","content":"a cat and a dog"},"logprobs":null,"finish_reason":null}]}
chunk {"id":"chatcmpl-gemini","object":"chat.completion.chunk","created":1700000000,"model":"gemini-x","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}
chunk {"id":"chatcmpl-gemini","object":"chat.completion.chunk","created":1700000000,"model":"gemini-x","choices":[],"usage":{"prompt_tokens":600,"completion_tokens":5,"total_tokens":605,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}`
				upstream = "data: " + upstream + "\n\n"
				method, ctype = "streamGenerateContent?alt=sse", "text/event-stream"
			}
			c, err := plugintest.ParseCase("images", []byte(`-- op --
`+op+`
-- request --
{"model":"gemini-x","messages":[{"role":"user","content":[{"type":"text","text":"what are they?"},{"type":"image_url","image_url":{"url":"`+cat+`"}},{"type":"image_url","image_url":{"url":"`+dog+`","detail":"low"}}]},{"role":"assistant","content":"a cat and a dog?"},{"role":"user","content":[{"type":"image_url","image_url":"`+cat+`"},{"type":"text","text":"this one again"}]}]}
-- upstream --
HTTP 200
Content-Type: `+ctype+`
Date: Tue, 14 Nov 2023 22:13:20 GMT

`+upstream+`
-- want upstream --
POST /v1beta/models/gemini-x:`+method+`

{"contents":[{"role":"user","parts":[{"text":"what are they?"},{"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgo="}},{"inlineData":{"mimeType":"image/jpeg","data":"/9j/4A=="}}]},{"role":"model","parts":[{"text":"a cat and a dog?"}]},{"role":"user","parts":[{"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgo="}},{"text":"this one again"}]}]}
-- want emits --
`+want+`
`))
			if err != nil {
				t.Fatal(err)
			}
			u := c.StartUpstream()
			defer u.Close()
			res := plugintest.Run(plugin{}, c.Op, c.Request, plugintest.Options{BaseURL: u.URL + "/v1beta"})
			if diffs := c.Check(u, res.Emits); len(diffs) > 0 {
				t.Fatal(strings.Join(diffs, "\n"))
			}
			mu.Lock()
			defer mu.Unlock()
			if hits["/cat.png"] != 1 || hits["/dog.jpg"] != 1 || len(hits) != 2 {
				t.Fatalf("image fetches %v, want each URL once", hits)
			}
		})
	}
}

// TestFetchedImageErrorOrder: with images fetched ahead, a request still
// fails with the error a translation part by part meets first: a refused
// image before a bad field, a bad part before an image (which is then not
// fetched at all).
func TestFetchedImageErrorOrder(t *testing.T) {
	var mu sync.Mutex
	hits := 0
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		if r.URL.Path == "/cat.png" {
			w.Header().Set("Content-Type", "image/png")
			w.Write([]byte("\x89PNG\r\n\x1a\n"))
			return
		}
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html></html>"))
	}))
	defer img.Close()
	tests := []struct {
		name, request string
		want          string
		fetches       int
	}{
		{"image, then a bad field",
			`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"` + img.URL + `/cat.png"}},{"type":"image_url","image_url":{"url":"` + img.URL + `/page.html"}}]}],"temperature":"hot"}`,
			`fail 400 {"error":{"message":"messages[0].content[1]: the image URL is not an image (png, jpeg, webp, gif, heic or heif)","type":"invalid_request_error","param":"messages[0].content[1]","code":null}}`, 2},
		{"good images, then a bad field",
			`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"` + img.URL + `/cat.png"}}]}],"temperature":"hot"}`,
			`fail 400 {"error":{"message":"temperature must be a number","type":"invalid_request_error","param":"temperature","code":null}}`, 1},
		{"bad part, then an image",
			`{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"UklGRg=="}},{"type":"image_url","image_url":{"url":"` + img.URL + `/cat.png"}}]}]}`,
			`fail 400 {"error":{"message":"messages[0].content[0].input_audio needs data and format","type":"invalid_request_error","param":"messages[0].content[0]","code":null}}`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			hits = 0
			mu.Unlock()
			res := plugintest.Run(plugin{}, abi.OpChat, []byte(tt.request), plugintest.Options{BaseURL: "http://127.0.0.1:1/v1beta"})
			if len(res.Emits) != 1 || res.Emits[0].String() != tt.want {
				t.Fatalf("emits %v\nwant %s", res.Emits, tt.want)
			}
			mu.Lock()
			defer mu.Unlock()
			if hits != tt.fetches {
				t.Fatalf("%d image fetches, want %d", hits, tt.fetches)
			}
		})
	}
}
