package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
)

// keyedAnswer is a client key's answer with what the limits say of it.
type keyedAnswer struct {
	status int
	header http.Header
	code   string
	typ    string
}

func keyedChat(t *testing.T, p *proxy, key, model string, maxTokens int) keyedAnswer {
	t.Helper()
	body := fmt.Sprintf(`{"model":%q,"max_tokens":%d,"messages":[{"role":"user","content":"count my tokens"}]}`, model, maxTokens)
	req, _ := http.NewRequest("POST", p.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return keyedAnswer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := keyedAnswer{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode != 200 {
		var e struct{ Error struct{ Code, Type string } }
		json.Unmarshal(b, &e)
		a.code, a.typ = e.Error.Code, e.Error.Type
	}
	return a
}

// burst sends n requests from 32 clients at once and returns the answers.
func burst(t *testing.T, p *proxy, key, model string, n, maxTokens int) []keyedAnswer {
	t.Helper()
	out := make([]keyedAnswer, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for c := range 32 {
		wg.Go(func() {
			<-start
			for i := c; i < n; i += 32 {
				out[i] = keyedChat(t, p, key, model, maxTokens)
			}
		})
	}
	close(start)
	wg.Wait()
	return out
}

func count(as []keyedAnswer, status int) int {
	n := 0
	for _, a := range as {
		if a.status == status {
			n++
		}
	}
	return n
}

// keyUsage reads a key's use from GET /api/keys.
func keyUsage(t *testing.T, p *proxy, id string) map[string]any {
	t.Helper()
	_, b := adminCall(t, p, "GET", "/api/keys", "")
	var list struct {
		Data []struct {
			ID    string         `json:"id"`
			Usage map[string]any `json:"usage"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	for _, k := range list.Data {
		if k.ID == id {
			return k.Usage
		}
	}
	t.Fatalf("key %s not listed", id)
	return nil
}

func TestKeyLimitRPM(t *testing.T) {
	p := startProxy(t, func(c *config.Config) { c.Log.Level = "warn" })
	k := createKey(t, p, `{"name":"rpm","rpm":10}`)
	as := burst(t, p, k.Key, "gpt-4o-mini", 64, 16)
	if ok, limited := count(as, 200), count(as, 429); ok != 10 || limited != 54 {
		t.Fatalf("%d answered, %d refused; want exactly 10 and 54", ok, limited)
	}
	var remaining []int
	for _, a := range as {
		if a.header.Get("x-ratelimit-limit-requests") != "10" || a.header.Get("x-ratelimit-reset-requests") == "" {
			t.Fatalf("headers %v", a.header)
		}
		if a.status == 200 {
			n, _ := strconv.Atoi(a.header.Get("x-ratelimit-remaining-requests"))
			remaining = append(remaining, n)
			continue
		}
		if a.code != "rate_limit_exceeded" || a.typ != "requests" || a.header.Get("Retry-After") == "" ||
			a.header.Get("x-ratelimit-remaining-requests") != "0" {
			t.Fatalf("refusal %+v", a)
		}
	}
	slices.Sort(remaining)
	if !slices.Equal(remaining, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Errorf("remaining-requests of the answered: %v", remaining)
	}
	if u := keyUsage(t, p, k.ID); u["requests_last_minute"] != float64(10) {
		t.Errorf("usage %v", u)
	}
	// The admin key has no limits.
	if a := keyedChat(t, p, adminKey, "gpt-4o-mini", 16); a.status != 200 || a.header.Get("x-ratelimit-limit-requests") != "" {
		t.Errorf("admin key: %+v", a)
	}
	// Raising the limit applies at once.
	if status, b := adminCall(t, p, "PATCH", "/api/keys/"+k.ID, `{"rpm":11}`); status != 200 || !strings.Contains(string(b), `"rpm":11`) {
		t.Fatalf("PATCH: %d %s", status, b)
	}
	if a := keyedChat(t, p, k.Key, "gpt-4o-mini", 16); a.status != 200 || a.header.Get("x-ratelimit-remaining-requests") != "0" {
		t.Errorf("after raising to 11: %+v", a)
	}
}

func TestKeyLimitParallelAndTokens(t *testing.T) {
	p, ups := startRouted(t, upstreams{"slow": {Faults: fakeupstream.Faults{TTFB: 1500 * time.Millisecond}}}, nil, nil)
	model := "slow/gpt-4o-mini"

	par := createKey(t, p, `{"name":"parallel","max_parallel":3}`)
	as := burst(t, p, par.Key, model, 32, 16)
	if ok := count(as, 200); ok != 3 {
		t.Fatalf("%d answered at once, want 3", ok)
	}
	for _, a := range as {
		if a.status == 429 && (a.code != "concurrency_limit_exceeded" || a.header.Get("Retry-After") != "1") {
			t.Fatalf("refusal %+v", a)
		}
	}
	chatsBefore := ups["slow"].Chats()
	promptBefore, completionBefore := ups["slow"].Usage()

	// Tokens: the estimate of one request (found from the headers of the
	// first), then a limit of three and a half such requests. The slow
	// upstream holds every admitted request until all have asked, so
	// corrections cannot make room during the burst.
	probe := createKey(t, p, `{"name":"probe","tpm":1000000}`)
	first := keyedChat(t, p, probe.Key, model, 100)
	rem, _ := strconv.Atoi(first.header.Get("x-ratelimit-remaining-tokens"))
	est := 1000000 - rem
	if first.status != 200 || est <= 100 {
		t.Fatalf("probe: %+v (estimate %d)", first, est)
	}
	tok := createKey(t, p, fmt.Sprintf(`{"name":"tokens","tpm":%d}`, 3*est+est/2))
	as = burst(t, p, tok.Key, model, 32, 100)
	if ok := count(as, 200); ok != 3 {
		t.Fatalf("%d admitted, want 3", ok)
	}
	for _, a := range as {
		if a.status == 429 && (a.code != "rate_limit_exceeded" || a.typ != "tokens") {
			t.Fatalf("refusal %+v", a)
		}
	}
	// Once they ended, the estimates gave way to the usage the upstream
	// reported for the three.
	if n := ups["slow"].Chats() - chatsBefore; n != 4 {
		t.Fatalf("%d upstream requests, want 4 (probe and 3)", n)
	}
	prompt, completion := ups["slow"].Usage()
	used := (prompt - promptBefore + completion - completionBefore) * 3 / 4 // the probe's share is a quarter
	waitFor(t, func() bool { return keyUsage(t, p, tok.ID)["tokens_last_minute"] == float64(used) })
}

func TestKeyBudget(t *testing.T) {
	p := startProxy(t, func(c *config.Config) {
		c.Log.Level = "warn"
		c.Prices = map[string]config.PriceConfig{"gpt-4o-mini": {Input: 1000, Output: 1000}} // $0.001 a token
	})
	// One request's cost, from the log of an unlimited key.
	probe := createKey(t, p, `{"name":"probe"}`)
	if a := keyedChat(t, p, probe.Key, "gpt-4o-mini", 16); a.status != 200 {
		t.Fatalf("probe %+v", a)
	}
	var cost float64
	waitFor(t, func() bool {
		_, b := adminCall(t, p, "GET", "/api/logs?key="+probe.ID, "")
		var page struct {
			Data []struct {
				CostUSD float64 `json:"cost_usd"`
			}
		}
		json.Unmarshal(b, &page)
		if len(page.Data) == 1 {
			cost = page.Data[0].CostUSD
		}
		return cost > 0
	})
	// A budget of 2.5 requests: three are served (the third starts with
	// 2 spent), the fourth is refused.
	k := createKey(t, p, fmt.Sprintf(`{"name":"budget","budget_usd":%g,"budget_period":"day"}`, 2.5*cost))
	for i := range 3 {
		if a := keyedChat(t, p, k.Key, "gpt-4o-mini", 16); a.status != 200 {
			t.Fatalf("request %d: %+v", i, a)
		}
	}
	a := keyedChat(t, p, k.Key, "gpt-4o-mini", 16)
	if a.status != 429 || a.code != "budget_exceeded" || a.typ != "insufficient_quota" {
		t.Fatalf("over budget: %+v", a)
	}
	midnight := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	if s, _ := strconv.Atoi(a.header.Get("Retry-After")); s < 1 || s > int(time.Until(midnight).Seconds())+2 {
		t.Errorf("Retry-After %q, want the seconds until midnight UTC", a.header.Get("Retry-After"))
	}
	u := keyUsage(t, p, k.ID)
	if spent := u["spent_usd"].(float64); spent < 3*cost*0.999 || spent > 3*cost*1.001 || u["budget_resets_at"] == nil {
		t.Errorf("usage %v, want 3 requests spent (%g)", u, 3*cost)
	}
	// Many at once: the estimates in flight count against the budget, so
	// no more start than one at a time would allow.
	k2 := createKey(t, p, fmt.Sprintf(`{"name":"budget2","budget_usd":%g}`, 2.5*cost))
	as := burst(t, p, k2.Key, "gpt-4o-mini", 32, 16)
	if ok := count(as, 200); ok < 1 || ok > 3 {
		t.Errorf("%d served at once, want 1 to 3", ok)
	}
}

func TestKeyLimitsAPI(t *testing.T) {
	p := startProxy(t, func(c *config.Config) { c.Log.Level = "warn" })
	for _, tt := range []struct{ body, param string }{
		{`{"name":"x","rpm":-1}`, ""},
		{`{"name":"x","budget_usd":5,"budget_period":"week"}`, ""},
		{`{"name":"x","rmp":5}`, "rmp"},
		{`{"name":"x","tpm":"many"}`, "tpm"},
	} {
		status, b := adminCall(t, p, "POST", "/api/keys", tt.body)
		if status != 400 || !strings.Contains(string(b), `"invalid_key_request"`) || !strings.Contains(string(b), tt.param) {
			t.Errorf("POST %s: %d %s", tt.body, status, b)
		}
	}
	k := createKey(t, p, `{"name":"x","budget_usd":5}`)
	status, b := adminCall(t, p, "PATCH", "/api/keys/"+k.ID, `{"tpm":5000,"max_parallel":2}`)
	if status != 200 || !strings.Contains(string(b), `"tpm":5000,"max_parallel":2,"budget_usd":5,"budget_period":"month"`) {
		t.Fatalf("PATCH: %d %s", status, b)
	}
	if status, b := adminCall(t, p, "PATCH", "/api/keys/"+k.ID, `{"budget_period":"year"}`); status != 400 {
		t.Errorf("bad period: %d %s", status, b)
	}
	if status, _ := adminCall(t, p, "PATCH", "/api/keys/key_nope", `{"rpm":1}`); status != 404 {
		t.Errorf("unknown key: %d", status)
	}
	adminCall(t, p, "DELETE", "/api/keys/"+k.ID, "")
	if status, b := adminCall(t, p, "PATCH", "/api/keys/"+k.ID, `{"rpm":1}`); status != 400 {
		t.Errorf("revoked key: %d %s", status, b)
	}
}
