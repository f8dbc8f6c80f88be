package app_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
	"github.com/llm-proxy/llm-proxy/host/internal/pgtest"
	"github.com/llm-proxy/llm-proxy/host/internal/store/storetest"
)

// BenchmarkProxyChat and BenchmarkProxyStream20 send requests through the
// whole proxy on loopback (Fiber, routing, a warm openai.wasm, egress) to the
// fake upstream, all in this process; llm-proxy-bench measures the proxy
// process alone.
//
// The ...Bodies variants turn [logs] bodies on (default cap and redaction).
//
// The Serial variants send one request at a time, so ns/op is the latency
// of a request; ...Dashboards100 keeps 100 live dashboards connected to
// /api/ws meanwhile, each receiving request.started and request.finished
// for every request. Compared with ...Serial, it shows what the fan-out
// costs a request.
func BenchmarkProxyChat(b *testing.B)           { benchProxy(b, chatBody, false, 0, true) }
func BenchmarkProxyStream20(b *testing.B)       { benchProxy(b, streamBody, false, 0, true) }
func BenchmarkProxyChatBodies(b *testing.B)     { benchProxy(b, chatBody, true, 0, true) }
func BenchmarkProxyStream20Bodies(b *testing.B) { benchProxy(b, streamBody, true, 0, true) }
func BenchmarkProxyChatSerial(b *testing.B)     { benchProxy(b, chatBody, false, 0, false) }
func BenchmarkProxyChatSerialDashboards100(b *testing.B) {
	benchProxy(b, chatBody, false, 100, false)
}

var (
	chatBody   = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 150) + `"}]}`
	streamBody = `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 150) + `"}]}`
)

func benchProxy(b *testing.B, body string, bodies bool, dashboards int, parallel bool) {
	p := startProxyWith(b, func(cfg *config.Config) { cfg.Log.Level = "warn"; cfg.Logs.Bodies = bodies },
		fakeupstream.Options{Chunks: 20, DisableRecording: true})
	var events atomic.Int64
	for i := 0; i < dashboards; i++ {
		c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(p.URL, "http")+"/api/ws",
			http.Header{"Authorization": {"Bearer " + adminKey}})
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
				events.Add(1)
			}
		}()
		defer c.Close()
	}
	defer func() {
		b.StopTimer()
		if dashboards > 0 {
			b.ReportMetric(float64(events.Load())/float64(b.N), "events/op")
			st := p.App.Hub().Stats()
			b.ReportMetric(float64(st.CutOff), "cut_off")
		}
	}()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	do := func() bool {
		req, _ := http.NewRequest("POST", p.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := client.Do(req)
		if err != nil {
			b.Error(err)
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Errorf("status %d", resp.StatusCode)
			return false
		}
		return true
	}
	if !parallel {
		for i := 0; i < b.N && do(); i++ {
		}
		return
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() && do() {
		}
	})
}

// runProxyBench posts body to the chat endpoint from parallel clients.
func runProxyBench(b *testing.B, p *proxy, body string) {
	runProxyBenchOn(b, p, "/v1/chat/completions", body)
}

// runProxyBenchSerial is runProxyBench with one client, one request at a
// time.
func runProxyBenchSerial(b *testing.B, p *proxy, body string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req, _ := http.NewRequest("POST", p.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// runProxyBenchOn is runProxyBench on another /v1 path.
func runProxyBenchOn(b *testing.B, p *proxy, path, body string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", p.URL+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+adminKey)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkProxyAnthropicChat and BenchmarkProxyAnthropicStream20 are the
// same through anthropic.wasm and the fake's Messages API (20 text deltas
// per stream), to compare the cost of translating with passing through.
func BenchmarkProxyAnthropicChat(b *testing.B) {
	benchAnthropicProxy(b, `{"model":"claude-test","messages":[{"role":"user","content":"`+strings.Repeat("lorem ipsum ", 150)+`"}]}`)
}

func BenchmarkProxyAnthropicStream20(b *testing.B) {
	benchAnthropicProxy(b, `{"model":"claude-test","stream":true,"messages":[{"role":"user","content":"`+strings.Repeat("lorem ipsum ", 150)+`"}]}`)
}

func benchAnthropicProxy(b *testing.B, body string) {
	p := startAnthropicProxy(b, fakeupstream.Options{Chunks: 20, DisableRecording: true},
		func(cfg *config.Config) { cfg.Log.Level = "warn" })
	runProxyBench(b, p, body)
}

// BenchmarkProxyCanned compares the plugins on equal terms: each provider
// is served by a canned upstream that writes fixed bytes (an OpenAI answer
// or stream, or the same as a Message or Messages API events), so neither
// upstream decodes anything, and the cpu-µs/op metric (this process's CPU
// time per request, client and upstream included) differs only by what the
// proxy does. Streams carry 20 content chunks.
func BenchmarkProxyCanned(b *testing.B) {
	openaiStream, anthropicStream := cannedStreams(20)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		stream := bytes.Contains(body, []byte(`"stream":true`))
		switch {
		case r.URL.Path == "/v1/chat/completions" && stream:
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write(openaiStream)
		case r.URL.Path == "/v1/chat/completions":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":300,"completion_tokens":2,"total_tokens":302}}`))
		case r.URL.Path == "/v1/messages" && stream:
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write(anthropicStream)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"id":"msg_x","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"hello there"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":300,"output_tokens":2}}`))
		}
	}))
	defer up.Close()
	p := startAnthropicProxy(b, fakeupstream.Options{DisableRecording: true}, func(cfg *config.Config) {
		cfg.Log.Level = "warn"
		cfg.Providers = append(cfg.Providers,
			config.ProviderConfig{Name: "canned-openai", Plugin: "openai", BaseURL: up.URL + "/v1", Models: []string{"canned-o"}, AllowPrivateNetwork: true},
			config.ProviderConfig{Name: "canned-anthropic", Plugin: "anthropic", BaseURL: up.URL, Models: []string{"canned-a"}, AllowPrivateNetwork: true})
	})
	prompt := strings.Repeat("lorem ipsum ", 150)
	for _, tc := range []struct{ name, model, stream string }{
		{"openai/chat", "canned-o", "false"}, {"anthropic/chat", "canned-a", "false"},
		{"openai/stream20", "canned-o", "true"}, {"anthropic/stream20", "canned-a", "true"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			body := `{"model":"` + tc.model + `","stream":` + tc.stream + `,"messages":[{"role":"user","content":"` + prompt + `"}]}`
			before := cpuTime()
			runProxyBench(b, p, body)
			b.ReportMetric(float64((cpuTime()-before).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// cannedStreams builds the same 20-chunk stream in both wire formats.
func cannedStreams(n int) (openai, anthropic []byte) {
	var o, a bytes.Buffer
	head := `data: {"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"m","choices":[`
	o.WriteString(head + `{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}` + "\n\n")
	ev := func(name, data string) { a.WriteString("event: " + name + "\ndata: " + data + "\n\n") }
	ev("message_start", `{"type":"message_start","message":{"id":"msg_x","type":"message","role":"assistant","content":[],"model":"m","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":300,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}`)
	ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
	ev("ping", `{"type": "ping"}`)
	for i := 0; i < n; i++ {
		o.WriteString(head + `{"index":0,"delta":{"content":"token "},"finish_reason":null}],"usage":null}` + "\n\n")
		ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"token "}}`)
	}
	o.WriteString(head + `{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}` + "\n\n")
	o.WriteString(head + `],"usage":{"prompt_tokens":300,"completion_tokens":20,"total_tokens":320}}` + "\n\n")
	o.WriteString("data: [DONE]\n\n")
	ev("content_block_stop", `{"type":"content_block_stop","index":0}`)
	ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":20}}`)
	ev("message_stop", `{"type":"message_stop"}`)
	return o.Bytes(), a.Bytes()
}

// cpuTime is this process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProxyObservability is the cost of metrics and tracing on a
// request: the same non-stream chat through three proxies in one run, one
// with neither ("off"), one with [metrics] on ("metrics"), one with
// metrics and every request traced ("traced": sample_ratio 1, spans sent
// to a local OTLP/HTTP endpoint that reads and drops them). cpu-µs/op is
// this process's CPU time per request (client, upstream and span
// receiver included), so the differences are what each adds.
func BenchmarkProxyObservability(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":300,"completion_tokens":2,"total_tokens":302}}`))
	}))
	defer up.Close()
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	proxies := map[string]*proxy{}
	for _, variant := range []string{"off", "metrics", "traced"} {
		proxies[variant] = startProxyWith(b, func(cfg *config.Config) {
			cfg.Log.Level = "warn"
			cfg.Metrics.Enabled = variant != "off"
			if variant == "traced" {
				cfg.Tracing.Endpoint = collector.URL + "/v1/traces"
			}
			cfg.Prices = map[string]config.PriceConfig{"canned-o": {Input: 1, Output: 2}}
			cfg.Providers = append(cfg.Providers,
				config.ProviderConfig{Name: "canned-openai", Plugin: "openai", BaseURL: up.URL + "/v1", Models: []string{"canned-o"}, AllowPrivateNetwork: true})
		}, fakeupstream.Options{DisableRecording: true})
	}
	body := `{"model":"canned-o","messages":[{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 150) + `"}]}`
	for range 2 {
		for _, variant := range []string{"off", "metrics", "traced"} {
			b.Run(variant, func(b *testing.B) {
				before := cpuTime()
				runProxyBench(b, proxies[variant], body)
				b.ReportMetric(float64((cpuTime()-before).Microseconds())/float64(b.N), "cpu-µs/op")
			})
		}
	}
}

// BenchmarkIngress is the cost of the Messages and Responses faces over
// chat completions: the same conversation, sent as each API's request, to
// the same provider (the openai plugin in front of a canned upstream),
// whole and as a 20-chunk stream, through one proxy in one run. cpu-µs/op
// is this process's CPU time per request (client and upstream included;
// the clients read bigger answers on the other faces, the Responses
// stream's most of all). The translation's own cost is in
// BenchmarkMessagesRequest and the others of host/internal/ingress.
func BenchmarkIngress(b *testing.B) {
	openaiStream, _ := cannedStreams(20)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"stream":true`)) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write(openaiStream)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":300,"completion_tokens":2,"total_tokens":302}}`))
	}))
	defer up.Close()
	p := startProxyWith(b, func(cfg *config.Config) {
		cfg.Log.Level = "warn"
		cfg.Responses.Store = false // as chat completions, nothing is kept
		cfg.Providers = append(cfg.Providers,
			config.ProviderConfig{Name: "canned-openai", Plugin: "openai", BaseURL: up.URL + "/v1", Models: []string{"canned-o"}, AllowPrivateNetwork: true})
	}, fakeupstream.Options{DisableRecording: true})
	text := strings.Repeat("lorem ipsum ", 50)
	bodies := map[string]struct{ path, body string }{
		"chat": {"/v1/chat/completions", `{"model":"canned-o","max_tokens":1024,"messages":[{"role":"system","content":"be brief"},` +
			`{"role":"user","content":"` + text + `"},{"role":"assistant","content":"` + text + `"},{"role":"user","content":"` + text + `"}]`},
		"messages": {"/v1/messages", `{"model":"canned-o","max_tokens":1024,"system":"be brief","messages":[` +
			`{"role":"user","content":[{"type":"text","text":"` + text + `"}]},{"role":"assistant","content":[{"type":"text","text":"` + text + `"}]},` +
			`{"role":"user","content":[{"type":"text","text":"` + text + `"}]}]`},
		"responses": {"/v1/responses", `{"model":"canned-o","max_output_tokens":1024,"instructions":"be brief","input":[` +
			`{"role":"user","content":[{"type":"input_text","text":"` + text + `"}]},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"` + text + `"}]},` +
			`{"role":"user","content":[{"type":"input_text","text":"` + text + `"}]}]`},
	}
	for _, stream := range []bool{false, true} {
		for _, face := range []string{"chat", "messages", "responses"} {
			name := face
			body := bodies[face].body + "}"
			if stream {
				name += "/stream20"
				body = bodies[face].body + `,"stream":true}`
			}
			b.Run(name, func(b *testing.B) {
				before := cpuTime()
				runProxyBenchOn(b, p, bodies[face].path, body)
				b.ReportMetric(float64((cpuTime()-before).Microseconds())/float64(b.N), "cpu-µs/op")
			})
		}
	}
}

// BenchmarkProxyDatabase is the same parallel chat requests
// (BenchmarkProxyChat) with the proxy on SQLite and on PostgreSQL, side by
// side in one run. cpu-µs/op is this process's CPU time per request: the
// proxy, its fake upstream and the client, and, on SQLite, the database's
// work; PostgreSQL's own work is done by its server process, outside it.
// On PostgreSQL the replica also runs its fleet chores (heartbeat, limit
// exchange every 250 ms, change notices).
//
// Saturating the machine's two cores (parallel) the PostgreSQL server
// competes with the proxy for them; one client at a time (serial) leaves
// it room, which is closer to a replica on a machine of its own.
func BenchmarkProxyDatabase(b *testing.B) {
	for _, mode := range []string{"serial", "parallel"} {
		for _, db := range []string{"sqlite", "postgres"} {
			b.Run(mode+"/db="+db, func(b *testing.B) { benchDatabase(b, db, mode == "parallel") })
		}
	}
}

func benchDatabase(b *testing.B, db string, parallel bool) {
	p := startProxyWith(b, func(cfg *config.Config) {
		cfg.Log.Level = "warn"
		if db == "postgres" {
			cfg.Database.Driver, cfg.Database.DSN, cfg.Database.DSNEnv = config.DriverPostgres, pgtest.NewDurable(b), ""
		}
	}, fakeupstream.Options{Chunks: 20, DisableRecording: true})
	cpu, dbCPU := storetest.CPUTime(), pgtest.Durable().CPUTime()
	if parallel {
		runProxyBench(b, p, chatBody)
	} else {
		runProxyBenchSerial(b, p, chatBody)
	}
	time.Sleep(500 * time.Millisecond) // the last rows written, by both
	b.StopTimer()
	if used := storetest.CPUTime() - cpu; used > 0 {
		b.ReportMetric(float64(used.Microseconds())/float64(b.N), "cpu-µs/op")
	}
	if db == "postgres" {
		// The database server's share, for the whole picture (SQLite's is
		// inside cpu-µs/op).
		b.ReportMetric(float64((pgtest.Durable().CPUTime()-dbCPU).Microseconds())/float64(b.N), "pg-cpu-µs/op")
	}
}
