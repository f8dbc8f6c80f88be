package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
)

// BenchmarkProxyChat and BenchmarkProxyStream20 send requests through the
// whole proxy on loopback (Fiber, routing, a warm openai.wasm, egress) to the
// fake upstream, all in this process; llm-proxy-bench measures the proxy
// process alone.
//
// The ...Bodies variants turn [logs] bodies on (default cap and redaction).
func BenchmarkProxyChat(b *testing.B)           { benchProxy(b, chatBody, false) }
func BenchmarkProxyStream20(b *testing.B)       { benchProxy(b, streamBody, false) }
func BenchmarkProxyChatBodies(b *testing.B)     { benchProxy(b, chatBody, true) }
func BenchmarkProxyStream20Bodies(b *testing.B) { benchProxy(b, streamBody, true) }

var (
	chatBody   = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 150) + `"}]}`
	streamBody = `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 150) + `"}]}`
)

func benchProxy(b *testing.B, body string, bodies bool) {
	p := startProxyWith(b, func(cfg *config.Config) { cfg.Log.Level = "warn"; cfg.Logs.Bodies = bodies },
		fakeupstream.Options{Chunks: 20, DisableRecording: true})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", p.URL+"/v1/chat/completions", strings.NewReader(body))
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
