package app_test

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fasthttp/websocket"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
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
