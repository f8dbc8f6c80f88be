package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
)

// upstreams are extra fake upstreams, each served as a provider of its
// name through the openai plugin, listing gpt-4o-mini and the fake's
// special models. A nil entry is a provider whose address refuses
// connections.
type upstreams map[string]*fakeupstream.Options

// startRouted starts the proxy with the upstreams as providers and the
// routes; tweak may change the rest. It returns the running upstreams by
// name.
func startRouted(t *testing.T, ups upstreams, routes []config.RouteConfig, tweak func(*config.Config)) (*proxy, map[string]*fakeupstream.Server) {
	t.Helper()
	servers := map[string]*fakeupstream.Server{}
	var extra []config.ProviderConfig
	for name, opts := range ups {
		url := refusedURL(t)
		if opts != nil {
			opts.APIKey = upstreamKey
			up, err := fakeupstream.Start(*opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(up.Close)
			servers[name], url = up, up.URL
		}
		extra = append(extra, config.ProviderConfig{Name: name, Plugin: "openai", BaseURL: url, APIKeyEnv: "FAKE_UPSTREAM_KEY",
			Models: []string{"gpt-4o-mini", fakeupstream.ModelContextOverflow, fakeupstream.ModelStreamErrorMidway}, AllowPrivateNetwork: true})
	}
	p := startProxy(t, func(c *config.Config) {
		c.Providers = append(c.Providers, extra...)
		c.Routes = routes
		c.Routing.BackoffBase = config.Duration(5 * time.Millisecond)
		c.Routing.BackoffMax = config.Duration(50 * time.Millisecond)
		c.Log.Level = "warn"
		if tweak != nil {
			tweak(c)
		}
	})
	return p, servers
}

// refusedURL is an http URL on loopback where nothing listens.
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/v1"
}

func targets(pairs ...string) []config.RouteTarget {
	var out []config.RouteTarget
	for _, p := range pairs {
		prov, model, _ := strings.Cut(p, ":")
		out = append(out, config.RouteTarget{Provider: prov, Model: model})
	}
	return out
}

// routeAnswer is what a routed request's answer says of its attempts.
type routeAnswer struct {
	status                     int
	provider, model, attempts  string
	id, retryAfter, body, code string
}

func routedChat(t *testing.T, p *proxy, model string, stream bool) routeAnswer {
	t.Helper()
	body := fmt.Sprintf(`{"model":%q,"stream":%t,"messages":[{"role":"user","content":"hello"}]}`, model, stream)
	resp, b := rawPost(t, p.URL+"/v1/chat/completions", adminKey, body)
	a := routeAnswer{status: resp.StatusCode, provider: resp.Header.Get("X-LLM-Proxy-Provider"),
		model: resp.Header.Get("X-LLM-Proxy-Model"), attempts: resp.Header.Get("X-LLM-Proxy-Attempts"),
		id: resp.Header.Get("X-Request-Id"), retryAfter: resp.Header.Get("Retry-After"), body: string(b)}
	if resp.StatusCode != 200 {
		checkOpenAIError(t, b)
		var e struct{ Error struct{ Code string } }
		json.Unmarshal(b, &e)
		a.code = e.Error.Code
	}
	return a
}

// loggedAttempts waits for the request's log row and returns its attempt
// count and the attempts as the log detail page shows them.
func loggedAttempts(t *testing.T, p *proxy, id string) (int, []map[string]any) {
	t.Helper()
	var detail struct {
		Provider   string           `json:"provider"`
		Attempts   int              `json:"attempts"`
		AttemptLog []map[string]any `json:"attempt_log"`
	}
	waitFor(t, func() bool {
		status, b := adminCall(t, p, "GET", "/api/logs/"+id, "")
		return status == 200 && json.Unmarshal(b, &detail) == nil
	})
	return detail.Attempts, detail.AttemptLog
}

func TestRoutingFallbackOrder(t *testing.T) {
	p, ups := startRouted(t, upstreams{
		"refused": nil,
		"broken":  {Faults: fakeupstream.Faults{FailFirst: 1 << 30, Status: 500}},
		"good":    {},
	}, []config.RouteConfig{
		{Model: "smart", Targets: targets("refused:gpt-4o-mini", "broken:gpt-4o-mini", "good:gpt-4o-mini")},
		{Model: "short", MaxAttempts: 2, Targets: targets("refused:gpt-4o-mini", "broken:gpt-4o-mini", "good:gpt-4o-mini")},
	}, nil)

	// The official SDK as the client: it sees one clean answer.
	var resp *http.Response
	c := p.client(adminKey)
	got, err := c.Chat.Completions.New(context.Background(), chatParams("smart", "fall back"), option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	if got.Choices[0].Message.Content != "echo: fall back" {
		t.Errorf("answer %q", got.Choices[0].Message.Content)
	}
	if resp.Header.Get("X-LLM-Proxy-Provider") != "good" || resp.Header.Get("X-LLM-Proxy-Model") != "gpt-4o-mini" ||
		resp.Header.Get("X-LLM-Proxy-Attempts") != "3" {
		t.Errorf("headers %v", resp.Header)
	}
	n, log := loggedAttempts(t, p, resp.Header.Get("X-Request-Id"))
	if n != 3 || len(log) != 3 {
		t.Fatalf("log row: %d attempts, %v", n, log)
	}
	for i, want := range []struct {
		provider string
		status   float64
	}{{"refused", 502}, {"broken", 500}, {"good", 200}} {
		if log[i]["provider"] != want.provider || log[i]["status"] != want.status {
			t.Errorf("attempt %d: %v, want %s %v", i, log[i], want.provider, want.status)
		}
	}
	if ups["broken"].Chats() != 1 || ups["good"].Chats() != 1 {
		t.Errorf("upstream requests: broken %d, good %d", ups["broken"].Chats(), ups["good"].Chats())
	}

	// Streams fall back the same way before their first byte.
	a := routedChat(t, p, "smart", true)
	if a.status != 200 || a.provider != "good" || a.attempts != "3" || !strings.Contains(a.body, "data: [DONE]") {
		t.Errorf("stream: %+v", a)
	}

	// max_attempts of the route: the third target is never reached, and
	// the client gets the last failure.
	a = routedChat(t, p, "short", false)
	if a.status != 502 || a.attempts != "2" || a.provider != "broken" {
		t.Errorf("short route: %+v", a)
	}

	// The metrics count the same: two requests answered by another target
	// than the first, the failed one not; every attempt after a first.
	fams := scrape(t, p.URL+"/metrics", adminKey)
	expectMetric(t, fams, 2, "llmproxy_route_fallbacks_total", "model=smart")
	expectMetric(t, fams, 4, "llmproxy_route_retries_total", "model=smart")
	expectMetric(t, fams, 1, "llmproxy_route_retries_total", "model=short")
	expectMetric(t, fams, 2, "llmproxy_route_attempts_total", "provider=good", "model=gpt-4o-mini", "result=ok")
	expectMetric(t, fams, 3, "llmproxy_route_attempts_total", "provider=refused", "model=gpt-4o-mini", "result=error")
}

func TestRoutingNoRetryAfterFirstByte(t *testing.T) {
	p, ups := startRouted(t, upstreams{"first": {}, "second": {}}, []config.RouteConfig{
		{Model: "cut", Targets: targets("first:"+fakeupstream.ModelStreamErrorMidway, "second:gpt-4o-mini")},
	}, nil)
	a := routedChat(t, p, "cut", true)
	// The stream began on the first target, then broke: the client gets
	// what came and an error event, never a replay from the second.
	if a.status != 200 || a.provider != "first" || a.attempts != "1" {
		t.Fatalf("answer %+v", a)
	}
	if !strings.Contains(a.body, `"error"`) || !strings.HasSuffix(a.body, "data: [DONE]\n\n") {
		t.Errorf("body %q", a.body)
	}
	if ups["second"].Chats() != 0 {
		t.Errorf("the second target got %d requests", ups["second"].Chats())
	}
}

func TestRoutingRetries(t *testing.T) {
	p, ups := startRouted(t, upstreams{
		"flaky":   {Faults: fakeupstream.Faults{FailFirst: 2, Status: 503}},
		"limited": {Faults: fakeupstream.Faults{FailFirst: 1, Status: 429, RetryAfter: "1"}},
		"busy":    {Faults: fakeupstream.Faults{FailFirst: 1 << 30, Status: 429, RetryAfter: "30"}},
		"spare":   {},
		"small":   {},
	}, []config.RouteConfig{
		{Model: "flaky", Targets: targets("flaky:gpt-4o-mini")},
		{Model: "limited", Targets: targets("limited:gpt-4o-mini")},
		{Model: "busy-first", Targets: targets("busy:gpt-4o-mini", "spare:gpt-4o-mini")},
		{Model: "long-prompt", Targets: targets("small:" + fakeupstream.ModelContextOverflow),
			ContextWindowFallback: &config.RouteTarget{Provider: "spare", Model: "gpt-4o-mini"}},
	}, nil)

	t.Run("a target failing its first requests", func(t *testing.T) {
		a := routedChat(t, p, "flaky", false)
		if a.status != 200 || a.attempts != "3" || ups["flaky"].Chats() != 3 {
			t.Fatalf("answer %+v after %d upstream requests", a, ups["flaky"].Chats())
		}
	})

	t.Run("429 with Retry-After is waited out", func(t *testing.T) {
		start := time.Now()
		a := routedChat(t, p, "limited", false)
		if a.status != 200 || a.attempts != "2" {
			t.Fatalf("answer %+v", a)
		}
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Errorf("retried after %v, before the upstream's Retry-After: 1", d)
		}
		_, log := loggedAttempts(t, p, a.id)
		if len(log) != 2 || log[0]["status"] != float64(429) || log[1]["waited_ms"].(float64) < 900 {
			t.Errorf("attempts %v", log)
		}
	})

	t.Run("429 moves traffic to the other target", func(t *testing.T) {
		a := routedChat(t, p, "busy-first", false)
		if a.status != 200 || a.provider != "spare" || a.attempts != "2" {
			t.Fatalf("answer %+v", a)
		}
		// busy asked for 30 s: it goes after spare meanwhile.
		for range 5 {
			if a := routedChat(t, p, "busy-first", false); a.provider != "spare" || a.attempts != "1" {
				t.Fatalf("answer %+v", a)
			}
		}
		if n := ups["busy"].Chats(); n != 1 {
			t.Errorf("busy got %d requests while resting", n)
		}
	})

	t.Run("a long Retry-After is passed on", func(t *testing.T) {
		a := routedChat(t, p, "busy/gpt-4o-mini", false)
		if a.status != 429 || a.retryAfter != "30" || a.attempts != "1" {
			t.Errorf("answer %+v", a)
		}
	})

	t.Run("context window fallback", func(t *testing.T) {
		a := routedChat(t, p, "long-prompt", false)
		if a.status != 200 || a.provider != "spare" || a.model != "gpt-4o-mini" || a.attempts != "2" {
			t.Errorf("answer %+v", a)
		}
		// Without a fallback the 400 is the answer, not retried.
		a = routedChat(t, p, "small/"+fakeupstream.ModelContextOverflow, false)
		if a.status != 400 || a.code != "context_length_exceeded" || a.attempts != "1" {
			t.Errorf("answer %+v", a)
		}
	})

	t.Run("client errors are not retried", func(t *testing.T) {
		a := routedChat(t, p, "fake/"+fakeupstream.ModelFail400, false)
		if a.status != 400 || a.attempts != "1" {
			t.Errorf("answer %+v", a)
		}
	})
}

// providerHealth reads a target's breaker state from GET /api/providers.
func providerHealth(t *testing.T, p *proxy, target string) string {
	t.Helper()
	status, b := adminCall(t, p, "GET", "/api/providers", "")
	if status != 200 {
		t.Fatalf("GET /api/providers: %d %s", status, b)
	}
	var list struct {
		Data []struct {
			Name   string `json:"name"`
			Health []struct {
				Target string `json:"target"`
				State  string `json:"state"`
			} `json:"health"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Data {
		for _, h := range p.Health {
			if h.Target == target {
				return h.State
			}
		}
	}
	return "unknown"
}

func TestRoutingBreaker(t *testing.T) {
	p, ups := startRouted(t, upstreams{
		"flaky":  {Faults: fakeupstream.Faults{FailFirst: 3, Status: 500}},
		"steady": {},
	}, []config.RouteConfig{
		{Model: "smart", Targets: targets("flaky:gpt-4o-mini", "steady:gpt-4o-mini")},
	}, func(c *config.Config) {
		c.Routing.Breaker.Failures = 3
		c.Routing.Breaker.Cooldown = config.Duration(time.Second)
	})
	events := p.App.Hub().Subscribe()
	defer events.Unsubscribe()

	for i := range 3 {
		if a := routedChat(t, p, "smart", false); a.status != 200 || a.provider != "steady" || a.attempts != "2" {
			t.Fatalf("request %d: %+v", i, a)
		}
	}
	if s := providerHealth(t, p, "flaky/gpt-4o-mini"); s != "open" {
		t.Fatalf("after 3 failures the breaker is %s", s)
	}
	// Open: flaky is skipped without an attempt.
	opened := time.Now()
	for range 5 {
		if a := routedChat(t, p, "smart", false); a.provider != "steady" || a.attempts != "1" {
			t.Fatalf("with the breaker open: %+v", a)
		}
	}
	if n := ups["flaky"].Chats(); n != 3 {
		t.Fatalf("flaky got %d requests, want 3", n)
	}
	// After the cooldown one probe goes to flaky, which now answers: the
	// breaker closes.
	time.Sleep(time.Until(opened.Add(1100 * time.Millisecond)))
	if a := routedChat(t, p, "smart", false); a.provider != "flaky" || a.attempts != "1" {
		t.Fatalf("probe: %+v", a)
	}
	if s := providerHealth(t, p, "flaky/gpt-4o-mini"); s != "closed" {
		t.Fatalf("after a good probe the breaker is %s", s)
	}
	// The live view saw it open, half-open and close.
	var seen []string
	deadline := time.After(10 * time.Second)
	for len(seen) < 3 {
		select {
		case raw := <-events.C:
			var e struct {
				Type string `json:"type"`
				Data struct {
					Target, State string
				} `json:"data"`
			}
			json.Unmarshal(raw, &e)
			if e.Type == "breaker.changed" && e.Data.Target == "flaky/gpt-4o-mini" {
				seen = append(seen, e.Data.State)
			}
		case <-deadline:
			t.Fatalf("breaker events %v", seen)
		}
	}
	if strings.Join(seen, ",") != "open,half_open,closed" {
		t.Errorf("breaker events %v", seen)
	}

	// Every target open: the answer comes at once, 503 with Retry-After.
	p2, _ := startRouted(t, upstreams{"a": nil, "b": nil}, []config.RouteConfig{
		{Model: "dead", MaxAttempts: 2, Targets: targets("a:gpt-4o-mini", "b:gpt-4o-mini")},
	}, func(c *config.Config) { c.Routing.Breaker.Failures = 1 })
	if a := routedChat(t, p2, "dead", false); a.status != 502 || a.attempts != "2" {
		t.Fatalf("first: %+v", a)
	}
	a := routedChat(t, p2, "dead", false)
	if a.status != 503 || a.code != "upstream_unavailable" || a.attempts != "" || a.retryAfter == "" {
		t.Fatalf("all open: %+v", a)
	}
	if s, _ := strconv.Atoi(a.retryAfter); s < 1 || s > 30 {
		t.Errorf("Retry-After %q", a.retryAfter)
	}
}

func TestRoutingWeighted(t *testing.T) {
	p, ups := startRouted(t, upstreams{
		"heavy": {DisableRecording: true},
		"light": {DisableRecording: true},
	}, []config.RouteConfig{
		{Model: "split", Strategy: "weighted", Targets: []config.RouteTarget{
			{Provider: "heavy", Model: "gpt-4o-mini", Weight: 3},
			{Provider: "light", Model: "gpt-4o-mini", Weight: 1},
		}},
	}, nil)
	const total, clients = 2000, 32
	body := `{"model":"split","messages":[{"role":"user","content":"w"}]}`
	var wg sync.WaitGroup
	errs := make(chan string, total)
	for c := range clients {
		wg.Go(func() {
			for i := c; i < total; i += clients {
				req, _ := http.NewRequest("POST", p.URL+"/v1/chat/completions", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+adminKey)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err.Error()
					continue
				}
				bufio.NewReader(resp.Body).WriteTo(discard{})
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- resp.Status
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatalf("request failed: %s", e)
	}
	heavy, light := ups["heavy"].Chats(), ups["light"].Chats()
	if heavy+light != total {
		t.Fatalf("%d + %d upstream requests, want %d", heavy, light, total)
	}
	// 75 % ± 5 % of the requests (the binomial spread is about 1 %).
	if share := float64(heavy) / total; share < 0.70 || share > 0.80 {
		t.Errorf("heavy got %.3f of the requests, want 0.75 ± 0.05 (heavy %d, light %d)", share, heavy, light)
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

func TestRoutingLeastLatency(t *testing.T) {
	p, ups := startRouted(t, upstreams{
		"slow": {Faults: fakeupstream.Faults{TTFB: 150 * time.Millisecond}},
		"fast": {},
	}, []config.RouteConfig{
		{Model: "quick", Strategy: "least_latency", Targets: targets("slow:gpt-4o-mini", "fast:gpt-4o-mini")},
	}, nil)
	const n = 60
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			for i := c; i < n; i += 4 {
				if a := routedChat(t, p, "quick", i%2 == 0); a.status != 200 {
					t.Errorf("request %d: %+v", i, a)
				}
			}
		})
	}
	wg.Wait()
	slow, fast := ups["slow"].Chats(), ups["fast"].Chats()
	if slow+fast != n {
		t.Fatalf("%d + %d requests", slow, fast)
	}
	// Until each has answered once both look alike; after that the fast
	// one wins every draw.
	if slow > 8 {
		t.Errorf("slow got %d of %d requests, fast %d", slow, n, fast)
	}
}

func TestRoutesAPI(t *testing.T) {
	p, _ := startRouted(t, upstreams{"one": {}, "two": {}}, []config.RouteConfig{
		{Model: "smart", Strategy: "weighted", Targets: []config.RouteTarget{
			{Provider: "one", Model: "gpt-4o-mini", Weight: 2}, {Provider: "two", Model: "gpt-4o-mini"},
		}, ContextWindowFallback: &config.RouteTarget{Provider: "two", Model: "gpt-4o-mini"}},
	}, nil)
	status, b := adminCall(t, p, "GET", "/api/routes", "")
	if status != 200 {
		t.Fatalf("%d %s", status, b)
	}
	want := `{"data":[{"model":"smart","source":"config","strategy":"weighted","max_attempts":0,"effective_max_attempts":3,"targets":[` +
		`{"provider":"one","model":"gpt-4o-mini","weight":2,"served":true,"health":{"target":"one/gpt-4o-mini","state":"closed","consecutive_failures":0,"error_rate":0,"outcomes":0,"ttfb_ms":0,"in_flight":0}},` +
		`{"provider":"two","model":"gpt-4o-mini","weight":1,"served":true,"health":{"target":"two/gpt-4o-mini","state":"closed","consecutive_failures":0,"error_rate":0,"outcomes":0,"ttfb_ms":0,"in_flight":0}}],` +
		`"context_window_fallback":{"provider":"two","model":"gpt-4o-mini","weight":1,"served":true,"health":{"target":"two/gpt-4o-mini","state":"closed","consecutive_failures":0,"error_rate":0,"outcomes":0,"ttfb_ms":0,"in_flight":0}}}],"object":"list"}`
	if string(b) != want {
		t.Errorf("GET /api/routes =\n%s\nwant\n%s", b, want)
	}
	// The route is a model clients can list.
	m, err := p.client(adminKey).Models.Get(context.Background(), "smart")
	if err != nil || m.OwnedBy != "llm-proxy" {
		t.Errorf("GET /v1/models/smart: %+v %v", m, err)
	}
}

// TestSeveralProviderKeys: a provider with three keys sends requests to
// them in turn; the one the upstream rate-limits rests, and the request it
// failed goes on with the next key at once.
func TestSeveralProviderKeys(t *testing.T) {
	const k1, k2, k3 = "sk-multi-one-0001", "sk-multi-two-0002", "sk-multi-three-0003"
	up, err := fakeupstream.Start(fakeupstream.Options{APIKey: k1, ExtraKeys: []string{k2, k3},
		Faults: fakeupstream.Faults{RateLimitKey: k2, RetryAfter: "30"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	p := startProxy(t, func(c *config.Config) { c.Log.Level = "warn" })
	body := fmt.Sprintf(`{"name":"multi","plugin":"openai","base_url":%q,"models":["gpt-4o-mini"],"allow_private_network":true,"api_keys":[%q,%q,%q]}`,
		up.URL, k1, k2, k3)
	if status, b := adminCall(t, p, "POST", "/api/providers", body); status != 201 {
		t.Fatalf("create: %d %s", status, b)
	}
	for i := range 30 {
		if a := routedChat(t, p, "multi/gpt-4o-mini", i%2 == 0); a.status != 200 || a.attempts != "1" {
			t.Fatalf("request %d: %+v", i, a)
		}
	}
	one, two, three := up.RequestsWithKey(k1), up.RequestsWithKey(k2), up.RequestsWithKey(k3)
	if two != 1 || one+three != 30 || one < 14 || three < 14 {
		t.Errorf("requests per key: %d, %d (rate-limited), %d", one, two, three)
	}
	status, b := adminCall(t, p, "GET", "/api/providers/multi", "")
	if status != 200 || !strings.Contains(string(b), `"api_keys":[{"set":true,"hint":"…0001"},{"set":true,"hint":"…0002"},{"set":true,"hint":"…0003"}]`) {
		t.Errorf("GET /api/providers/multi: %s", b)
	}
	_, b = adminCall(t, p, "GET", "/api/providers", "")
	var list struct {
		Data []struct {
			Name      string `json:"name"`
			KeyStates []struct {
				Requests     int64   `json:"requests"`
				Refused      int64   `json:"refused"`
				RestingUntil *string `json:"resting_until"`
			} `json:"key_states"`
		} `json:"data"`
	}
	json.Unmarshal(b, &list)
	for _, pv := range list.Data {
		if pv.Name != "multi" {
			continue
		}
		ks := pv.KeyStates
		if len(ks) != 3 || ks[1].Refused != 1 || ks[1].RestingUntil == nil || ks[0].RestingUntil != nil || ks[0].Requests+ks[2].Requests != 30 {
			t.Errorf("key states %+v", ks)
		}
		return
	}
	t.Errorf("multi not listed: %s", b)
}

// TestProviderQuota: a provider's own max_parallel and rpm hold over all
// clients; a request over them goes to the route's next target, or gets
// 429 when there is none.
func TestProviderQuota(t *testing.T) {
	p, ups := startRouted(t, upstreams{
		"quota": {Faults: fakeupstream.Faults{TTFB: 1500 * time.Millisecond}},
		"spare": {},
	}, []config.RouteConfig{
		{Model: "spill", Targets: targets("quota:gpt-4o-mini", "spare:gpt-4o-mini")},
	}, func(c *config.Config) {
		for i := range c.Providers {
			if c.Providers[i].Name == "quota" {
				c.Providers[i].MaxParallel = 2
			}
		}
	})
	var wg sync.WaitGroup
	answers := make([]routeAnswer, 8)
	for i := range answers {
		wg.Go(func() { answers[i] = routedChat(t, p, "spill", false) })
	}
	wg.Wait()
	byProvider := map[string]int{}
	for _, a := range answers {
		if a.status != 200 || a.attempts != "1" {
			t.Fatalf("answer %+v", a)
		}
		byProvider[a.provider]++
	}
	if byProvider["quota"] != 2 || byProvider["spare"] != 6 || ups["quota"].Chats() != 2 {
		t.Fatalf("served by %v; quota got %d requests", byProvider, ups["quota"].Chats())
	}
	// Without another target: 429 with Retry-After.
	for i := range answers {
		wg.Go(func() { answers[i] = routedChat(t, p, "quota/gpt-4o-mini", false) })
	}
	wg.Wait()
	ok, limited := 0, 0
	for _, a := range answers {
		switch {
		case a.status == 200:
			ok++
		case a.status == 429 && a.code == "provider_rate_limited" && a.retryAfter != "":
			limited++
		default:
			t.Fatalf("answer %+v", a)
		}
	}
	if ok != 2 || limited != 6 {
		t.Fatalf("%d served, %d refused; want 2 and 6", ok, limited)
	}

	// A provider added through the API with rpm 3.
	body := fmt.Sprintf(`{"name":"paced","plugin":"openai","base_url":%q,"models":["gpt-4o-mini"],"allow_private_network":true,"api_key":%q,"rpm":3}`,
		ups["spare"].URL, upstreamKey)
	if status, b := adminCall(t, p, "POST", "/api/providers", body); status != 201 || !strings.Contains(string(b), `"rpm":3`) {
		t.Fatalf("create: %d %s", status, b)
	}
	ok = 0
	for range 5 {
		if a := routedChat(t, p, "paced/gpt-4o-mini", false); a.status == 200 {
			ok++
		}
	}
	if ok != 3 {
		t.Fatalf("%d of 5 served at rpm 3", ok)
	}
}

// TestRoutesAdminAPI: routes made, changed and deleted through the admin
// API serve from the next request on, survive a restart, and every bad
// request gets a 400, 404 or 409 naming its field.
func TestRoutesAdminAPI(t *testing.T) {
	var cfg *config.Config
	p, ups := startRouted(t, upstreams{"one": {}, "two": {}}, []config.RouteConfig{
		{Model: "smart", Targets: targets("one:gpt-4o-mini")},
	}, func(c *config.Config) { cfg = c })

	status, b := adminCall(t, p, "POST", "/api/routes",
		`{"model":"team/fast","targets":[{"provider":"one","model":"gpt-4o-mini"},{"provider":"two","model":"gpt-4o-mini"}]}`)
	if status != 201 {
		t.Fatalf("create: %d %s", status, b)
	}
	var created struct {
		Model, Source, Strategy string
		MaxAttempts             int `json:"max_attempts"`
		EffectiveMaxAttempts    int `json:"effective_max_attempts"`
		Targets                 []struct {
			Provider string
			Weight   int
			Served   bool
		}
		CreatedAt *time.Time `json:"created_at"`
	}
	if err := json.Unmarshal(b, &created); err != nil || created.Source != "database" || created.Strategy != "fallback" ||
		created.MaxAttempts != 0 || created.EffectiveMaxAttempts != 3 || len(created.Targets) != 2 ||
		!created.Targets[1].Served || created.Targets[1].Weight != 1 || created.CreatedAt == nil {
		t.Fatalf("created: %s", b)
	}
	// Served at once, through the OpenAI SDK, and listed as a model.
	if got, err := chatText(t, p, "team/fast", "hi"); err != nil || got == "" {
		t.Fatalf("chat on the new route: %q %v", got, err)
	}
	if ups["one"].Chats() != 1 || ups["two"].Chats() != 0 {
		t.Fatalf("served by one %d, two %d", ups["one"].Chats(), ups["two"].Chats())
	}
	if m, err := p.client(adminKey).Models.Get(context.Background(), "team/fast"); err != nil || m.OwnedBy != "llm-proxy" {
		t.Fatalf("GET /v1/models/team/fast: %+v %v", m, err)
	}
	if status, b := adminCall(t, p, "GET", "/api/routes/team/fast", ""); status != 200 || !strings.Contains(string(b), `"model":"team/fast"`) {
		t.Fatalf("get: %d %s", status, b)
	}

	// A change applies to the next request.
	status, b = adminCall(t, p, "PATCH", "/api/routes/team/fast",
		`{"targets":[{"provider":"two","model":"gpt-4o-mini"}],"context_window_fallback":{"provider":"one","model":"gpt-4o-mini"}}`)
	if status != 200 || !strings.Contains(string(b), `"context_window_fallback":{"provider":"one"`) {
		t.Fatalf("patch: %d %s", status, b)
	}
	if a := routedChat(t, p, "team/fast", true); a.status != 200 || a.provider != "two" {
		t.Fatalf("after the patch: %+v", a)
	}

	for _, c := range []struct {
		what, method, path, body string
		status                   int
		code, param              string
	}{
		{"unknown provider", "POST", "/api/routes", `{"model":"x","targets":[{"provider":"nobody","model":"m"}]}`, 400, "invalid_route", "targets[0].provider"},
		{"bad strategy", "POST", "/api/routes", `{"model":"x","strategy":"random","targets":[{"provider":"one","model":"m"}]}`, 400, "invalid_route", "strategy"},
		{"no targets", "POST", "/api/routes", `{"model":"x","targets":[]}`, 400, "invalid_route", "targets"},
		{"negative weight", "POST", "/api/routes", `{"model":"x","targets":[{"provider":"one","model":"m","weight":-2}]}`, 400, "invalid_route", "targets[0].weight"},
		{"weight a string", "POST", "/api/routes", `{"model":"x","targets":[{"provider":"one","model":"m","weight":"2"}]}`, 400, "invalid_route", "targets.weight"},
		{"unknown field", "POST", "/api/routes", `{"model":"x","targets":[{"provider":"one","model":"m"}],"retries":2}`, 400, "invalid_route", "retries"},
		{"not JSON", "POST", "/api/routes", `{"model":`, 400, "invalid_json", ""},
		{"taken", "POST", "/api/routes", `{"model":"team/fast","targets":[{"provider":"one","model":"m"}]}`, 409, "route_exists", "model"},
		{"a config route's name", "POST", "/api/routes", `{"model":"smart","targets":[{"provider":"one","model":"m"}]}`, 409, "route_exists", "model"},
		{"change a config route", "PATCH", "/api/routes/smart", `{"strategy":"weighted"}`, 409, "route_read_only", ""},
		{"delete a config route", "DELETE", "/api/routes/smart", ``, 409, "route_read_only", ""},
		{"rename", "PATCH", "/api/routes/team/fast", `{"model":"other"}`, 400, "invalid_route", "model"},
		{"unknown fallback field", "PATCH", "/api/routes/team/fast", `{"context_window_fallback":{"provider":"one","model":"m","x":1}}`, 400, "invalid_route", "x"},
		{"patch unknown", "PATCH", "/api/routes/nope", `{}`, 404, "route_not_found", ""},
		{"delete unknown", "DELETE", "/api/routes/nope", ``, 404, "route_not_found", ""},
	} {
		status, body := adminCall(t, p, c.method, c.path, c.body)
		expectAPIError(t, c.what, status, body, c.status, c.code, c.param)
	}
	if a := routedChat(t, p, "team/fast", false); a.status != 200 || a.provider != "two" {
		t.Fatalf("a refused patch changed the route: %+v", a)
	}

	// The route outlives a restart.
	p.Stop()
	p = startOn(t, cfg, p.Upstream)
	if a := routedChat(t, p, "team/fast", false); a.status != 200 || a.provider != "two" {
		t.Fatalf("after a restart: %+v", a)
	}
	status, b = adminCall(t, p, "DELETE", "/api/routes/team/fast", "")
	if status != 200 {
		t.Fatalf("delete: %d %s", status, b)
	}
	if a := routedChat(t, p, "team/fast", false); a.status != 404 || a.code != "model_not_found" {
		t.Fatalf("after delete: %+v", a)
	}
	status, b = adminCall(t, p, "GET", "/api/routes", "")
	if status != 200 || strings.Contains(string(b), "team/fast") || !strings.Contains(string(b), `"model":"smart","source":"config"`) {
		t.Fatalf("list after delete: %d %s", status, b)
	}
}

// TestProviderKeyWeights: keys with weights 3 and 1 share the requests
// three to one, exactly; new keys without weights take equal turns; a
// weight list that is not one per key, or a weight out of range, is a 400
// naming the field.
func TestProviderKeyWeights(t *testing.T) {
	const k1, k2 = "sk-weighed-one-0001", "sk-weighed-two-0002"
	up, err := fakeupstream.Start(fakeupstream.Options{APIKey: k1, ExtraKeys: []string{k2}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	p := startProxy(t, func(c *config.Config) { c.Log.Level = "warn" })
	body := fmt.Sprintf(`{"name":"weighed","plugin":"openai","base_url":%q,"models":["gpt-4o-mini"],"allow_private_network":true,"api_keys":[%q,%q],"api_key_weights":[3,1]}`,
		up.URL, k1, k2)
	status, b := adminCall(t, p, "POST", "/api/providers", body)
	if status != 201 || !strings.Contains(string(b), `"api_key_weights":[3,1]`) {
		t.Fatalf("create: %d %s", status, b)
	}
	send := func(n int) {
		t.Helper()
		for i := range n {
			if a := routedChat(t, p, "weighed/gpt-4o-mini", i%2 == 0); a.status != 200 {
				t.Fatalf("request %d: %+v", i, a)
			}
		}
	}
	send(40)
	if one, two := up.RequestsWithKey(k1), up.RequestsWithKey(k2); one != 30 || two != 10 {
		t.Errorf("requests per key: %d and %d, want 30 and 10", one, two)
	}
	_, b = adminCall(t, p, "GET", "/api/providers", "")
	if !strings.Contains(string(b), `"key_states":[{"weight":3,"requests":30,"refused":0},{"weight":1,"requests":10,"refused":0}]`) {
		t.Errorf("key states: %s", b)
	}

	for _, c := range []struct {
		what, method, path, body string
		param                    string
	}{
		{"fewer weights than keys", "POST", "/api/providers", fmt.Sprintf(`{"name":"w2","plugin":"openai","base_url":%q,"models":["m"],"allow_private_network":true,"api_keys":["a-key-1","a-key-2"],"api_key_weights":[1]}`, up.URL), "api_key_weights"},
		{"weights without keys", "POST", "/api/providers", fmt.Sprintf(`{"name":"w3","plugin":"openai","base_url":%q,"models":["m"],"allow_private_network":true,"api_key_weights":[1]}`, up.URL), "api_key_weights"},
		{"weight 0", "PATCH", "/api/providers/weighed", `{"api_key_weights":[0,1]}`, "api_key_weights[0]"},
		{"weight too large", "PATCH", "/api/providers/weighed", `{"api_key_weights":[1,1001]}`, "api_key_weights[1]"},
		{"patch more weights than keys", "PATCH", "/api/providers/weighed", `{"api_key_weights":[1,1,1]}`, "api_key_weights"},
	} {
		status, body := adminCall(t, p, c.method, c.path, c.body)
		expectAPIError(t, c.what, status, body, 400, "invalid_provider", c.param)
	}

	// New weights alone apply to the next request.
	if status, b := adminCall(t, p, "PATCH", "/api/providers/weighed", `{"api_key_weights":[1,4]}`); status != 200 || !strings.Contains(string(b), `"api_key_weights":[1,4]`) {
		t.Fatalf("patch weights: %d %s", status, b)
	}
	send(50)
	if one, two := up.RequestsWithKey(k1), up.RequestsWithKey(k2); one != 40 || two != 50 {
		t.Errorf("after new weights, requests per key: %d and %d, want 40 and 50", one, two)
	}
	// New keys without weights take equal turns.
	if status, b := adminCall(t, p, "PATCH", "/api/providers/weighed", fmt.Sprintf(`{"api_keys":[%q,%q]}`, k2, k1)); status != 200 || !strings.Contains(string(b), `"api_key_weights":[]`) {
		t.Fatalf("patch keys: %d %s", status, b)
	}
	send(20)
	if one, two := up.RequestsWithKey(k1), up.RequestsWithKey(k2); one != 50 || two != 60 {
		t.Errorf("after new keys, requests per key: %d and %d, want 50 and 60", one, two)
	}
}

// TestProviderTokenQuota: a provider's tpm admits requests by their
// estimate (a quarter of the body's bytes plus max_tokens) while they run,
// refuses one that can never fit, and counts only the tokens used once
// they are done.
func TestProviderTokenQuota(t *testing.T) {
	p, ups := startRouted(t, upstreams{"slow": {Faults: fakeupstream.Faults{TTFB: 4 * time.Second}}}, nil, nil)
	body := func(maxTokens int) string {
		return fmt.Sprintf(`{"model":"metered/gpt-4o-mini","max_tokens":%d,"messages":[{"role":"user","content":"hello"}]}`, maxTokens)
	}
	estimate := (len(body(200))+3)/4 + 200
	tpm := 2*estimate + estimate/2 // two at once fit, not three
	create := fmt.Sprintf(`{"name":"metered","plugin":"openai","base_url":%q,"models":["gpt-4o-mini"],"allow_private_network":true,"api_key":%q,"tpm":%d}`,
		ups["slow"].URL, upstreamKey, tpm)
	if status, b := adminCall(t, p, "POST", "/api/providers", create); status != 201 {
		t.Fatalf("create: %d %s", status, b)
	}
	post := func(maxTokens int) (int, string) {
		resp, b := rawPost(t, p.URL+"/v1/chat/completions", adminKey, body(maxTokens))
		if resp.StatusCode != 200 {
			var e struct{ Error struct{ Code string } }
			json.Unmarshal(b, &e)
			return resp.StatusCode, e.Error.Code
		}
		return 200, ""
	}
	// Never fits: refused at once, without reaching the upstream.
	if status, code := post(10 * tpm); status != 429 || code != "provider_rate_limited" || ups["slow"].Chats() != 0 {
		t.Fatalf("a request over the whole tpm: %d %s, upstream saw %d", status, code, ups["slow"].Chats())
	}
	var wg sync.WaitGroup
	statuses := make([]int, 5)
	for i := range statuses {
		wg.Go(func() { statuses[i], _ = post(200) })
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		switch s {
		case 200:
			ok++
		case 429:
		default:
			t.Fatalf("statuses %v", statuses)
		}
	}
	if ok != 2 || ups["slow"].Chats() != 2 {
		t.Fatalf("%d of 5 served at once (upstream saw %d); want 2: statuses %v", ok, ups["slow"].Chats(), statuses)
	}
	// Done, the two count their real usage (a few tokens), not their
	// estimates: two more fit in the same minute.
	for range 2 {
		wg.Go(func() {
			if s, code := post(200); s != 200 {
				t.Errorf("after the first two finished: %d %s", s, code)
			}
		})
	}
	wg.Wait()
}

// TestProviderKeysFromEnvironment: a config provider's api_key_env and
// api_key_envs give it several keys, shared by api_key_weights; a
// variable that is not set is left out with a warning, and the weights,
// no longer one per key, give way to equal turns.
func TestProviderKeysFromEnvironment(t *testing.T) {
	const k1, k2 = "sk-from-env-one-0001", "sk-from-env-two-0002"
	up, err := fakeupstream.Start(fakeupstream.Options{APIKey: k1, ExtraKeys: []string{k2}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	p, cfg := startProxyConfig(t)
	p.Stop()
	cfg.Log.Level = "warn"
	cfg.Providers = append(cfg.Providers,
		config.ProviderConfig{Name: "envkeys", Plugin: "openai", BaseURL: up.URL, Models: []string{"gpt-4o-mini"}, AllowPrivateNetwork: true,
			APIKeyEnv: "TEST_KEY_ONE", APIKeyEnvs: []string{"TEST_KEY_TWO"}, APIKeyWeights: []int{1, 3}},
		config.ProviderConfig{Name: "partial", Plugin: "openai", BaseURL: up.URL, Models: []string{"gpt-4o-mini"}, AllowPrivateNetwork: true,
			APIKeyEnv: "TEST_KEY_ONE", APIKeyEnvs: []string{"TEST_KEY_UNSET"}, APIKeyWeights: []int{1, 3}})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p = startOn(t, cfg, up, "TEST_KEY_ONE="+k1, "TEST_KEY_TWO="+k2)
	if !strings.Contains(p.Logs.String(), "provider key not set") || !strings.Contains(p.Logs.String(), "env=TEST_KEY_UNSET") {
		t.Errorf("no warning for the unset variable:\n%s", p.Logs.String())
	}
	for i := range 40 {
		if a := routedChat(t, p, "envkeys/gpt-4o-mini", i%2 == 0); a.status != 200 {
			t.Fatalf("request %d: %+v", i, a)
		}
	}
	if one, two := up.RequestsWithKey(k1), up.RequestsWithKey(k2); one != 10 || two != 30 {
		t.Errorf("requests per key: %d and %d, want 10 and 30", one, two)
	}
	for i := range 4 {
		if a := routedChat(t, p, "partial/gpt-4o-mini", false); a.status != 200 {
			t.Fatalf("partial request %d: %+v", i, a)
		}
	}
	if one := up.RequestsWithKey(k1); one != 14 {
		t.Errorf("the partial provider's one key served %d requests, want 4", one-10)
	}
	// The environment's keys are never shown, not even their last
	// characters.
	_, b := adminCall(t, p, "GET", "/api/providers/envkeys", "")
	if strings.Contains(string(b), "0001") || strings.Contains(string(b), "0002") || !strings.Contains(string(b), `"api_key_weights":[1,3]`) {
		t.Errorf("GET /api/providers/envkeys: %s", b)
	}
}

// TestRoutingSkipsUnsupportedOperation: a target whose plugin lacks the
// operation (the hostile test plugin has no embeddings) passes the request to the
// route's next target, without an upstream request; a route of that
// target alone answers 400 unsupported_operation.
func TestRoutingSkipsUnsupportedOperation(t *testing.T) {
	p := startProxy(t, func(c *config.Config) {
		c.Routes = []config.RouteConfig{
			{Model: "embed-mixed", Targets: []config.RouteTarget{{Provider: "hostile", Model: "ok"}, {Provider: "fake", Model: "text-embedding-3-small"}}},
			{Model: "embed-hostile", Targets: []config.RouteTarget{{Provider: "hostile", Model: "ok"}}},
		}
	})
	c := p.client(adminKey)
	var head http.Header
	resp, err := c.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
		Model: "embed-mixed", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hello")},
	}, option.WithMiddleware(func(r *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		res, err := next(r)
		if res != nil {
			head = res.Header
		}
		return res, err
	}))
	if err != nil || len(resp.Data) == 0 {
		t.Fatalf("%v %+v", err, resp)
	}
	if head.Get("X-LLM-Proxy-Provider") != "fake" || head.Get("X-LLM-Proxy-Attempts") != "2" {
		t.Fatalf("headers %v", head)
	}
	_, err = c.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
		Model: "embed-hostile", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hello")},
	})
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Code != "unsupported_operation" {
		t.Fatalf("%v", err)
	}
}
