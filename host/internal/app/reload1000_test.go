package app_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/host/internal/testplugins"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// TestHotReloadUnder1000Streams: a new build of the openai plugin replaces
// the running one while a thousand streams are open on it. Every one of
// them finishes on the old version, chunk for chunk; new streams go to the
// new version; the old version closes after its last stream.
func TestHotReloadUnder1000Streams(t *testing.T) {
	if raceEnabled {
		t.Skip("a thousand streams at once are too much for the race detector; the test task runs this without it")
	}
	const n = 1000
	p := startProxyWith(t, nil, fakeupstream.Options{Chunks: 20, ChunkDelay: 150 * time.Millisecond})
	wasm := mustRead(t, testplugins.BuildID(t, "plugins/openai", "reload-1000-v2"))
	manifest, _ := abi.ManifestFromWasm(wasm)
	v2, err := abi.WithManifest(wasm, []byte(strings.Replace(string(manifest), `"version": "1.0.0"`, `"version": "1.0.2"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if warm, err := plugin.Load(context.Background(), v2, plugin.LoadOptions{Cache: sharedCache(t)}); err != nil {
		t.Fatal(err)
	} else {
		warm.Retire()
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}}
	defer client.CloseIdleConnections()
	body := []byte(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"one of a thousand streams"}]}`)
	var started sync.WaitGroup
	started.Add(n)
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	contents := make([]int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			once := sync.OnceFunc(started.Done)
			defer once()
			fail := func(err error) {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
			req, _ := http.NewRequest("POST", p.URL+"/v1/chat/completions", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+adminKey)
			resp, err := client.Do(req)
			if err != nil {
				fail(err)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				fail(fmt.Errorf("status %d", resp.StatusCode))
				return
			}
			sc := bufio.NewScanner(resp.Body)
			done := false
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "data: ") {
					once()
				}
				switch {
				case line == "data: [DONE]":
					done = true
				case strings.Contains(line, `"content":`):
					contents[i]++
				}
			}
			if !done {
				fail(fmt.Errorf("stream %d ended without [DONE] after %d content chunks: %v", i, contents[i], sc.Err()))
			}
		}()
	}
	started.Wait()
	if open := pluginInfo(t, p, "openai").Instances.Streams; open < n/2 {
		t.Fatalf("only %d streams open on the plugin when the reload starts", open)
	}
	testplugins.InstallBytes(t, v2, p.Dir, "openai.wasm")
	waitFor(t, func() bool { return pluginInfo(t, p, "openai").Version == "1.0.2" })
	// A stream that starts now is served by the new version.
	resp, err := p.client(adminKey).Chat.Completions.New(context.Background(), chatParams("gpt-4o-mini", "after the reload"))
	if err != nil || resp.Choices[0].Message.Content != "echo: after the reload" {
		t.Fatalf("%v %+v", err, resp)
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d streams failed across the reload; first: %v", failed.Load(), n, firstErr.Load())
	}
	for i, c := range contents {
		if c != contents[0] || c < 20 {
			t.Fatalf("stream %d got %d content chunks, stream 0 %d", i, c, contents[0])
		}
	}
	waitFor(t, func() bool {
		return strings.Contains(p.Logs.String(), `"plugin version closed" plugin=openai version=1.0.0`)
	})
}
