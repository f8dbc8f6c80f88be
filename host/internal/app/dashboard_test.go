package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/openai/openai-go/v3/option"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
	"github.com/llm-proxy/llm-proxy/host/internal/testplugins"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// The dashboard in a real browser: Debian's chromium, headless, driven by
// chromedp. Each subtest has a browser of its own; they share one proxy.
//
// Without Chromium the tests skip and say how to install it, unless
// LLMPROXY_REQUIRE_BROWSER=1 (CI), which makes a missing browser a
// failure. Screenshots of each page go to LLMPROXY_ARTIFACTS (a temporary
// folder when unset).

const browserInstallHint = "install it with `apt-get install -y chromium` (Debian) to run the dashboard's browser tests"

// chromiumPath finds the browser, or skips (or fails, when it is required).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("LLMPROXY_REQUIRE_BROWSER") == "1" {
		t.Fatalf("Chromium not found and LLMPROXY_REQUIRE_BROWSER=1: %s", browserInstallHint)
	}
	t.Skipf("Chromium not found: %s", browserInstallHint)
	return ""
}

// artifactsDir is where screenshots go.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("LLMPROXY_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tab is one headless browser showing the dashboard of p.
type tab struct {
	t     *testing.T
	p     *proxy
	ctx   context.Context
	shots string

	mu       sync.Mutex
	problems []string // uncaught exceptions, console errors, CSP refusals
}

func openTab(t *testing.T, p *proxy) *tab {
	t.Helper()
	exe := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	tb := &tab{t: t, p: p, ctx: ctx, shots: artifactsDir(t)}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		chromedp.Cancel(cctx) // closes the browser and waits for it
		ccancel()
		cancel()
		cancelAlloc() // waits for the process to exit
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", exe, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// A refused request (a 401 the page expects) is a network
			// entry; script errors, exceptions and CSP refusals are not.
			if m.IsException() || (m.Type == chromedp.ConsoleError && m.Source != "network") {
				tb.mu.Lock()
				tb.problems = append(tb.problems, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
				tb.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			tb.shot("failed")
		}
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, pr := range tb.problems {
			t.Errorf("browser console: %s", pr)
		}
	})
	return tb
}

// do runs actions with a time limit; on failure it saves a screenshot and
// shows the page's text.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.fail(what, err)
	}
}

func (tb *tab) fail(what string, err error) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
	tb.t.Fatalf("%s: %v\npage:\n%s", what, err, text)
}

// wait polls a JavaScript condition until it is true (15 s at most); a
// condition that throws (an element not there yet) counts as false.
func (tb *tab) wait(what, cond string) {
	tb.t.Helper()
	expr := `(() => { try { return (` + cond + `); } catch (e) { return false; } })()`
	tb.do(what, func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(20*time.Millisecond),
			chromedp.WithPollingTimeout(15*time.Second))(ctx, t)
	})
}

// eval runs JavaScript (awaiting a promise) and returns its result as a string.
func (tb *tab) eval(expr string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.fail("evaluate "+expr, err)
	}
	return v
}

// open loads a path of the dashboard as a fresh page.
func (tb *tab) open(path string) {
	tb.t.Helper()
	tb.do("open "+path, chromedp.Navigate(tb.p.URL+path))
}

// ready waits until the page shown has drawn its first data.
func (tb *tab) ready(path string) {
	tb.t.Helper()
	tb.wait("page "+path+" ready", `location.pathname === `+strconv.Quote(path)+
		` && !!document.querySelector('#main > .page[data-ready]')`)
}

// visit follows the navigation link to a page and waits for it.
func (tb *tab) visit(path string) {
	tb.t.Helper()
	tb.do("click "+path, chromedp.Click(chromedp.CSS(`nav a[href="`+path+`"]`)))
	tb.ready(path)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// shot saves a full-page screenshot as <test>-<name>.png.
func (tb *tab) shot(name string) {
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Logf("screenshot %s: %v", name, err)
		return
	}
	file := filepath.Join(tb.shots, unsafeName.ReplaceAllString(tb.t.Name(), "_")+"-"+name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		tb.t.Logf("screenshot %s: %v", name, err)
	}
}

func (tb *tab) login(user, password string) {
	tb.t.Helper()
	tb.open("/login")
	tb.do("log in as "+user,
		chromedp.WaitVisible(chromedp.ID("login-username")),
		chromedp.SendKeys(chromedp.ID("login-username"), user),
		chromedp.SendKeys(chromedp.ID("login-password"), password),
		chromedp.Click(chromedp.CSS(`.loginbox button[type=submit]`)),
	)
	tb.ready("/overview")
}

// text is the visible text of the first element matching a CSS selector.
func (tb *tab) text(css string) string {
	return tb.eval(`(document.querySelector(` + strconv.Quote(css) + `) || {innerText: ''}).innerText`)
}

func TestDashboardBrowser(t *testing.T) {
	if raceEnabled {
		t.Skip("each login's bcrypt hash takes seconds under the race detector; `go tool task test` runs this test without -race")
	}
	chromiumPath(t)
	rc := startReceiver(t)
	p := startProxy(t, func(c *config.Config) {
		c.Tracing.Endpoint = rc.URL + "/v1/traces" // the detail page shows each request's trace id
		c.Prices = map[string]config.PriceConfig{"gpt-4o-mini": {Input: 0.15, Output: 0.6}}
		c.Logs.Bodies = true
		// The demo plugin's instances close after a second without a
		// stream, so the plugins page can be seen scaling it to zero.
		idle := config.Duration(time.Second)
		c.Plugins.LimitsOverride["demo"] = config.LimitsPatch{IdleTimeout: &idle}
	})
	createUser(t, p, "alice", "alice password", "admin")
	createUser(t, p, "victor", "victor password", "viewer")
	ctx := context.Background()

	t.Run("wrong password is refused", func(t *testing.T) {
		tb := openTab(t, p)
		tb.open("/")
		tb.wait("sent to the login page", `location.pathname === "/login" && !!document.getElementById("login-username")`)
		tb.do("wrong password",
			chromedp.SendKeys(chromedp.ID("login-username"), "alice"),
			chromedp.SendKeys(chromedp.ID("login-password"), "not her password"),
			chromedp.Click(chromedp.CSS(`.loginbox button[type=submit]`)),
		)
		tb.wait("refusal shown", `(document.querySelector(".banner.error") || {}).innerText === "Incorrect username or password."`)
		tb.shot("refused")
		if got := tb.eval(`fetch("/api/session").then(r => String(r.status))`); got != "401" {
			t.Fatalf("after a refused login, /api/session answers %s", got)
		}
		if tb.eval(`location.pathname`) != "/login" {
			t.Fatal("left the login page")
		}
	})

	t.Run("login, every page, logout", func(t *testing.T) {
		tb := openTab(t, p)
		tb.open("/keys") // a deep link survives the detour through the login page
		tb.wait("login page", `location.pathname === "/login" && !!document.getElementById("login-username")`)
		tb.shot("login")
		tb.do("log in",
			chromedp.SendKeys(chromedp.ID("login-username"), "alice"),
			chromedp.SendKeys(chromedp.ID("login-password"), "alice password"),
			chromedp.Click(chromedp.CSS(`.loginbox button[type=submit]`)),
		)
		tb.ready("/keys")
		if who := tb.text(".who"); !strings.Contains(who, "alice") || !strings.Contains(who, "admin") {
			t.Fatalf("top bar shows %q", who)
		}
		tb.wait("live connection", `document.querySelector(".livestate").dataset.state === "live"`)
		tb.visit("/overview")
		tb.shot("overview-empty")

		// Some traffic, so the pages have something to show.
		c := p.client(adminKey)
		for _, m := range []string{"gpt-4o-mini", "gpt-4o-mini", "demo-echo", fakeupstream.ModelFail500} {
			c.Chat.Completions.New(ctx, chatParams(m, "hello from the browser test"))
		}
		createKey(t, p, `{"name":"ci","models":["gpt-4o-mini"]}`)
		waitFor(t, func() bool {
			_, b := adminCall(t, p, "GET", "/api/logs?limit=10", "")
			return strings.Count(string(b), `"id":"req_`) >= 4
		})

		pages := []string{"/overview", "/live", "/logs", "/usage", "/keys", "/providers", "/routes", "/plugins", "/users", "/settings"}
		for _, path := range pages {
			tb.visit(path)
			tb.wait("title", `document.title.endsWith("LLM Proxy") && document.querySelector("nav a[aria-current=page]").getAttribute("href") === `+strconv.Quote(path))
			tb.shot(strings.TrimPrefix(path, "/"))
			if banner := tb.text("#main .banner.error"); banner != "" {
				t.Errorf("%s shows an error: %s", path, banner)
			}
		}
		// A request's detail, reached from the logs.
		tb.visit("/logs")
		tb.do("open a request", chromedp.Click(chromedp.CSS(`#main tbody tr a`)))
		tb.wait("request detail", `location.pathname.startsWith("/logs/req_") && !!document.querySelector('#main > .page[data-ready]')`)
		tb.wait("timings and bodies shown", `document.body.innerText.includes("Timings, tokens and cost") && document.querySelectorAll("#main pre").length === 2`)
		tb.wait("trace id shown", `/^[0-9a-f]{32}$/.test((document.querySelector("[data-trace-id]") || {}).textContent || "")`)
		tb.shot("request")

		// Retries: the fail-500 request above was tried three times; its
		// detail lists the attempts.
		_, b := adminCall(t, p, "GET", "/api/logs?limit=50", "")
		var logPage struct {
			Data []struct {
				ID       string `json:"id"`
				Attempts int    `json:"attempts"`
			} `json:"data"`
		}
		json.Unmarshal(b, &logPage)
		retried := ""
		for _, r := range logPage.Data {
			if r.Attempts == 3 {
				retried = r.ID
			}
		}
		if retried == "" {
			t.Fatalf("no request with 3 attempts in %s", b)
		}
		tb.open("/logs/" + retried)
		tb.wait("attempts listed", `!!document.querySelector('#main > .page[data-ready]') && document.querySelectorAll('section[aria-labelledby=d-attempts] tbody tr').length === 3`)
		tb.shot("request-attempts")

		// A request made with Anthropic's API says so, on its detail and
		// in the list.
		resp, _ := rawPost(t, p.URL+"/v1/messages", adminKey, `{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"from Claude's SDK"}]}`)
		getLog(t, p, resp.Header.Get("X-Request-Id"))
		tb.open("/logs/" + resp.Header.Get("X-Request-Id"))
		tb.wait("api shown", `!!document.querySelector('#main > .page[data-ready]') && (document.querySelector('[data-api=messages]') || {}).textContent === "Anthropic Messages"`)
		tb.visit("/logs")
		tb.wait("api column", `[...document.querySelectorAll('#main tbody td')].some((td) => td.textContent === "Anthropic Messages")`)

		// Breakers: fake/fail-500 has failed three attempts; another
		// request's three open its breaker, and the page shows it live.
		tb.visit("/providers")
		tb.wait("health shown", `!!document.querySelector('li[data-target="fake/gpt-4o-mini"][data-state="closed"]') && !!document.querySelector('li[data-target="fake/fail-500"][data-state="closed"]')`)
		c.Chat.Completions.New(ctx, chatParams(fakeupstream.ModelFail500, "once more"))
		tb.wait("breaker open, live", `!!document.querySelector('li[data-target="fake/fail-500"][data-state="open"]')`)
		tb.shot("providers-breaker")

		// A reload keeps the page (the server answers index.html for it).
		tb.open("/usage?group=provider")
		tb.ready("/usage")
		tb.wait("grouped by provider", `document.body.innerText.includes("By provider")`)

		// Dark, then back to the system's choice.
		tb.visit("/overview")
		tb.do("dark theme", chromedp.Click(chromedp.CSS(".topbar button[aria-live]")), chromedp.Click(chromedp.CSS(".topbar button[aria-live]")))
		tb.wait("dark", `document.documentElement.dataset.theme === "dark"`)
		tb.shot("overview-dark")
		tb.visit("/keys")
		tb.shot("keys-dark")
		tb.do("system theme", chromedp.Click(chromedp.CSS(".topbar button[aria-live]")))

		// Narrow screens get the same pages.
		tb.do("phone width", chromedp.EmulateViewport(390, 844))
		tb.visit("/logs")
		tb.shot("logs-narrow")
		tb.do("desktop width", chromedp.EmulateViewport(1280, 900))

		tb.do("log out", chromedp.Click(chromedp.CSS(".topbar button:last-child")))
		tb.wait("login page", `location.pathname === "/login" && !!document.getElementById("login-username")`)
		if got := tb.eval(`fetch("/api/session").then(r => String(r.status))`); got != "401" {
			t.Fatalf("after logout, /api/session answers %s", got)
		}
	})

	t.Run("settings change from the page", func(t *testing.T) {
		tb := openTab(t, p)
		tb.login("alice", "alice password")
		tb.visit("/settings")
		tb.eval(`document.getElementById("set-retention").value = ""`)
		tb.do("retention 14 days",
			chromedp.SendKeys(chromedp.ID("set-retention"), "14"),
			chromedp.Click(chromedp.CSS(`#main form button[type=submit]`)),
		)
		tb.wait("saved", `[...document.querySelectorAll(".toast")].some(t => t.innerText === "Settings saved.")`)
		tb.shot("saved")
		if _, b := adminCall(t, p, "GET", "/api/settings", ""); !strings.Contains(string(b), `"retention_days":14`) ||
			!strings.Contains(string(b), `"changed":["retention_days"]`) {
			t.Fatalf("settings after the page's change: %s", b)
		}
	})

	t.Run("overview follows requests live", func(t *testing.T) {
		tb := openTab(t, p)
		tb.login("alice", "alice password")
		tb.wait("live connection", `document.querySelector(".livestate").dataset.state === "live"`)
		var o struct {
			Totals struct {
				Requests int `json:"requests"`
			} `json:"totals"`
		}
		_, b := adminCall(t, p, "GET", "/api/overview?range=1h", "")
		json.Unmarshal(b, &o)
		n := o.Totals.Requests
		requests := func(n int) string {
			if n == 1 {
				return `"1 request"`
			}
			return `"` + strconv.Itoa(n) + ` requests"`
		}
		tile := func(name, part string) string {
			return `document.querySelector('[data-tile="` + name + `"] .` + part + `').innerText`
		}
		tb.wait("totals shown", tile("rpm", "sub")+` === `+requests(n))

		// A request the upstream holds for 3 s is in flight meanwhile.
		done := make(chan error, 1)
		go func() {
			_, err := p.client(adminKey).Chat.Completions.New(ctx, chatParams(fakeupstream.ModelSlowHeaders, "slow"))
			done <- err
		}()
		tb.wait("one in flight", tile("inflight", "value")+` === "1"`)
		tb.shot("in-flight")
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		tb.wait("none in flight", tile("inflight", "value")+` === "0"`)
		tb.wait("counted", tile("rpm", "sub")+` === `+requests(n+1))
		tb.wait("charts drawn", `document.querySelectorAll("#main .uplot").length === 4`)
		tb.shot("counted")
	})

	t.Run("live view shows an SDK request within a second", func(t *testing.T) {
		tb := openTab(t, p)
		tb.login("alice", "alice password")
		tb.visit("/live")
		tb.wait("live connection", `document.querySelector(".livestate").dataset.state === "live"`)
		var resp *http.Response
		sent := time.Now()
		if _, err := p.client(adminKey).Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "live"), option.WithResponseInto(&resp)); err != nil {
			t.Fatal(err)
		}
		id := resp.Header.Get("X-Request-Id")
		tb.wait("row of "+id, `!!document.querySelector('tr[data-request-id="`+id+`"][data-state="finished"]')`)
		took := time.Since(sent)
		t.Logf("request %s finished in the live view %v after it was sent", id, took)
		if took > time.Second {
			t.Errorf("the request reached the live view after %v, more than a second", took)
		}
		if row := tb.text(`tr[data-request-id="` + id + `"]`); !strings.Contains(row, "gpt-4o-mini") || !strings.Contains(row, "200") {
			t.Errorf("row: %q", row)
		}
		tb.shot("live")
	})

	t.Run("live view reconnects and catches up", func(t *testing.T) {
		tb := openTab(t, p)
		// Instrument the page's WebSocket: keep each one, and while
		// __offline is set, make new ones fail as if the network were down.
		if _, err := chromedp.Call(tb.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `
			window.__sockets = [];
			const Real = window.WebSocket;
			window.WebSocket = class extends Real {
				constructor(url, protocols) {
					super(window.__offline ? String(url).replace("/api/ws", "/api/offline") : url, protocols);
					window.__sockets.push(this);
				}
			};`}); err != nil {
			t.Fatal(err)
		}
		tb.login("alice", "alice password")
		tb.visit("/live")
		tb.wait("live connection", `document.querySelector(".livestate").dataset.state === "live"`)
		tb.eval(`window.__offline = true; window.__sockets.at(-1).close(); ""`)
		tb.wait("reconnecting shown", `document.querySelector(".livestate").dataset.state === "reconnecting"`)
		var resp *http.Response
		if _, err := p.client(adminKey).Chat.Completions.New(ctx, chatParams("demo-echo", "while offline"), option.WithResponseInto(&resp)); err != nil {
			t.Fatal(err)
		}
		id := resp.Header.Get("X-Request-Id")
		waitFor(t, func() bool {
			_, b := adminCall(t, p, "GET", "/api/logs?limit=5", "")
			return strings.Contains(string(b), id)
		})
		if n := tb.eval(`String(document.querySelectorAll('tr[data-request-id="` + id + `"]').length)`); n != "0" {
			t.Fatal("the request reached the page while it was offline")
		}
		// Two attempts fail (the second after asking /api/session whether
		// the session is still good) before the network comes back.
		tb.wait("retried while offline", `window.__sockets.length >= 3`)
		tb.shot("offline")
		tb.eval(`window.__offline = false; ""`)
		tb.wait("back live", `document.querySelector(".livestate").dataset.state === "live"`)
		tb.wait("caught up", `!!document.querySelector('tr[data-request-id="`+id+`"][data-state="finished"]')`)
	})

	t.Run("a provider with two keys added in the page", func(t *testing.T) {
		tb := openTab(t, p)
		tb.login("alice", "alice password")
		tb.visit("/providers")
		// The second key is wrong: the upstream refuses it, it rests, and
		// the requests it would have served go with the first.
		tb.do("fill the form",
			chromedp.Click(chromedp.CSS(`.pagehead button.primary, #main button.primary`)),
			chromedp.WaitVisible(chromedp.ID("prov-name")),
			chromedp.SendKeys(chromedp.ID("prov-name"), "twokeys"),
			chromedp.SetValue(chromedp.ID("prov-base"), p.Upstream.URL),
			chromedp.SetValue(chromedp.ID("prov-models"), "gpt-4o-mini"),
			chromedp.SetValue(chromedp.ID("prov-key"), upstreamKey+"\nsk-wrong-key-for-the-test-9f31"),
			chromedp.SetValue(chromedp.ID("prov-weights"), "2, 1"),
			chromedp.Click(chromedp.ID("prov-private")),
			chromedp.Click(chromedp.CSS(`form button[type=submit]`)),
		)
		tb.wait("added", `!!document.querySelector('section[data-provider="twokeys"]')`)
		for i := range 4 {
			if _, err := p.client(adminKey).Chat.Completions.New(ctx, chatParams("twokeys/gpt-4o-mini", "two keys")); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
		tb.visit("/providers")
		tb.wait("keys listed", `(() => { const s = document.querySelector('section[data-provider="twokeys"]'); return !!s && s.querySelectorAll('li[data-key-index]').length === 2 && s.querySelector('li[data-key-index="1"]').innerText.includes("resting") && s.querySelector('li[data-key-index="0"]').innerText.includes("weight 2"); })()`)
		tb.shot("two-keys")
	})

	t.Run("a route made in the page serves, changes and goes", func(t *testing.T) {
		tb := openTab(t, p)
		tb.login("alice", "alice password")
		tb.visit("/routes")
		tb.do("fill the form",
			chromedp.Click(chromedp.CSS(`.pagehead button.primary`)),
			chromedp.WaitVisible(chromedp.ID("route-model")),
			chromedp.SendKeys(chromedp.ID("route-model"), "team/browser"),
			chromedp.SetValue(chromedp.ID("route-t0-provider"), "demo"),
			chromedp.SendKeys(chromedp.ID("route-t0-model"), "demo-echo"),
			chromedp.Click(chromedp.ID("route-add-target")),
			chromedp.SetValue(chromedp.ID("route-t1-provider"), "fake"),
			chromedp.SendKeys(chromedp.ID("route-t1-model"), "gpt-4o-mini"),
		)
		tb.shot("route-form")
		tb.do("send it", chromedp.Click(chromedp.CSS(`form[aria-labelledby=route-form-title] button[type=submit]`)))
		card := `section[data-route="team/browser"]`
		tb.wait("added", `!!document.querySelector('`+card+` li[data-target="demo/demo-echo"]') && !!document.querySelector('`+card+` li[data-target="fake/gpt-4o-mini"]')`)
		if got, err := chatText(t, p, "team/browser", "via the route"); err != nil || got != "You said: via the route" {
			t.Fatalf("chat on the route: %q %v", got, err)
		}
		// Change: the fake upstream first, weighted.
		tb.do("change it",
			chromedp.Click(chromedp.CSS(card+` .actions button:not(.danger)`)),
			chromedp.WaitVisible(chromedp.ID("route-strategy")),
			chromedp.SetValue(chromedp.ID("route-strategy"), "weighted"),
			chromedp.SetValue(chromedp.ID("route-t0-weight"), "0"),
		)
		tb.eval(`document.querySelector('#route-targets li:first-child button').click(); ""`)
		tb.do("save", chromedp.Click(chromedp.CSS(`form[aria-labelledby=route-form-title] button[type=submit]`)))
		tb.wait("changed", `!document.querySelector('`+card+` li[data-target="demo/demo-echo"]') && document.querySelector('`+card+`').innerText.includes("weighted")`)
		tb.shot("route-changed")
		if a := routedChat(t, p, "team/browser", false); a.status != 200 || a.provider != "fake" {
			t.Fatalf("after the change: %+v", a)
		}
		tb.do("remove it",
			chromedp.Click(chromedp.CSS(card+` button.danger`)),
			chromedp.WaitVisible(chromedp.CSS(`dialog[open] button[value=yes]`)),
			chromedp.Click(chromedp.CSS(`dialog[open] button[value=yes]`)),
		)
		tb.wait("removed", `!document.querySelector('`+card+`')`)
		if a := routedChat(t, p, "team/browser", false); a.status != 404 {
			t.Fatalf("after removal: %+v", a)
		}
	})

	t.Run("a key made in the page works until revoked in the page", func(t *testing.T) {
		tb := openTab(t, p)
		tb.login("alice", "alice password")
		tb.visit("/keys")
		tb.do("create a key",
			chromedp.SendKeys(chromedp.ID("key-name"), "made in the browser"),
			chromedp.SendKeys(chromedp.ID("key-rpm"), "2"),
			chromedp.Click(chromedp.CSS(`#create-key button[type=submit]`)),
			chromedp.WaitVisible(chromedp.ID("new-key")),
		)
		secret := tb.text("#new-key")
		if !strings.HasPrefix(secret, "sk-lp-") {
			t.Fatalf("secret shown: %q", secret)
		}
		tb.shot("created")
		if _, err := p.client(secret).Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "with the new key")); err != nil {
			t.Fatalf("the new key does not work: %v", err)
		}
		id := tb.eval(`[...document.querySelectorAll("tr[data-key-id]")].find(r => r.innerText.includes("made in the browser")).dataset.keyId`)
		row := `tr[data-key-id="` + id + `"]`
		// Its limit of 2 requests a minute: the first above, one more,
		// then 429; the page shows the use against the limit.
		if _, err := p.client(secret).Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "second")); err != nil {
			t.Fatalf("second request: %v", err)
		}
		_, err := p.client(secret).Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "third"))
		if e := apiError(t, err); e.StatusCode != 429 || e.Code != "rate_limit_exceeded" {
			t.Fatalf("third request in the minute: %v", err)
		}
		tb.visit("/keys")
		tb.wait("use against the limit", `document.querySelector('`+row+`').innerText.includes("2 / 2 req/min")`)
		tb.do("change the limits",
			chromedp.Click(chromedp.CSS(row+` button[aria-label^="Limits"]`)),
			chromedp.WaitVisible(chromedp.ID("limits-title")),
			chromedp.SetValue(chromedp.ID("key-rpm"), "5"),
			chromedp.Click(chromedp.CSS(`form[aria-labelledby=limits-title] button[type=submit]`)),
		)
		tb.wait("new limit shown", `document.querySelector('`+row+`').innerText.includes("2 / 5 req/min")`)
		tb.shot("key-limits")
		if _, err := p.client(secret).Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "after raising")); err != nil {
			t.Fatalf("after raising the limit: %v", err)
		}
		tb.do("revoke it",
			chromedp.Click(chromedp.CSS(row+` button.danger`)),
			chromedp.WaitVisible(chromedp.CSS(`dialog[open] button[value=yes]`)),
		)
		tb.shot("confirm-revoke")
		tb.do("confirm", chromedp.Click(chromedp.CSS(`dialog[open] button[value=yes]`)))
		tb.wait("revoked", `!!document.querySelector('`+row+`[data-state="revoked"]')`)
		tb.shot("revoked")
		_, err = p.client(secret).Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "after revocation"))
		if e := apiError(t, err); e.StatusCode != 401 {
			t.Fatalf("revoked key: status %d", e.StatusCode)
		}
	})

	t.Run("a viewer cannot create keys", func(t *testing.T) {
		createKey(t, p, `{"name":"existing"}`)
		tb := openTab(t, p)
		tb.login("victor", "victor password")
		tb.visit("/keys")
		tb.shot("keys")
		if n := tb.eval(`String(document.querySelectorAll("#create-key, #key-name, #main button.danger").length)`); n != "0" {
			t.Fatalf("a viewer sees %s key controls", n)
		}
		if !strings.Contains(tb.text("#main .banner.info"), "read-only") {
			t.Fatal("no read-only notice")
		}
		// The server refuses, whatever the page shows.
		got := tb.eval(`(async () => {
			const s = await (await fetch("/api/session")).json();
			const r = await fetch("/api/keys", {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": s.csrf_token}, body: JSON.stringify({name: "sneaky"})});
			return r.status + " " + (await r.json()).error.code;
		})()`)
		if got != "403 permission_denied" {
			t.Fatalf("a viewer's POST /api/keys: %s", got)
		}
		tb.visit("/plugins")
		if n := tb.eval(`String(document.querySelectorAll("#plugin-file").length)`); n != "0" {
			t.Fatal("a viewer sees the plugin upload")
		}
	})

	t.Run("the logs page filters and exports", func(t *testing.T) {
		demoRows := func() int {
			_, b := adminCall(t, p, "GET", "/api/logs?model=demo-echo&limit=500", "")
			return strings.Count(string(b), `"id":"req_`)
		}
		want := demoRows() + 3
		c := p.client(adminKey)
		for i := 0; i < 3; i++ {
			c.Chat.Completions.New(ctx, chatParams("demo-echo", "for the logs page"))
		}
		c.Chat.Completions.New(ctx, chatParams(fakeupstream.ModelFail500, "for the logs page"))
		waitFor(t, func() bool { return demoRows() == want })

		tb := openTab(t, p)
		tb.login("alice", "alice password")
		tb.visit("/logs")
		tb.do("filter by model",
			chromedp.SendKeys(chromedp.ID("f-model"), "demo-echo"),
			chromedp.Click(chromedp.CSS(`form[role=search] button[type=submit]`)),
		)
		tb.wait("filtered", `location.search.includes("model=demo-echo") && !!document.querySelector('#main > .page[data-ready]')`)
		rows := tb.eval(`JSON.stringify([...document.querySelectorAll("#main tbody tr")].map(r => r.children[2].innerText))`)
		var models []string
		json.Unmarshal([]byte(rows), &models)
		if len(models) != want {
			t.Fatalf("%d rows shown, want %d: %v", len(models), want, models)
		}
		for _, m := range models {
			if m != "demo-echo" {
				t.Fatalf("row of model %q under a demo-echo filter", m)
			}
		}
		tb.shot("filtered")

		dir := t.TempDir()
		if _, err := chromedp.CallBrowser(tb.ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
			Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: new(true),
		}); err != nil {
			t.Fatal(err)
		}
		download := func(link string) []byte {
			t.Helper()
			dctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
			defer cancel()
			progress := chromedp.BrowserEvents(dctx, cdpbrowser.DownloadProgress)
			tb.do("click "+link, chromedp.Click(chromedp.ID(link)))
			for ev, err := range progress {
				if err != nil {
					t.Fatalf("download %s: %v", link, err)
				}
				switch ev.State {
				case cdpbrowser.DownloadProgressStateCompleted:
					b, err := os.ReadFile(filepath.Join(dir, ev.GUID))
					if err != nil {
						t.Fatal(err)
					}
					return b
				case cdpbrowser.DownloadProgressStateCanceled:
					t.Fatalf("download %s canceled", link)
				}
			}
			return nil
		}
		csv := strings.Split(strings.TrimSpace(string(download("export-csv"))), "\n")
		if len(csv) != want+1 || !strings.HasPrefix(csv[0], "id,ts,") {
			t.Fatalf("CSV export: %d lines, want %d:\n%s", len(csv), want+1, strings.Join(csv, "\n"))
		}
		for _, line := range csv[1:] {
			if !strings.Contains(line, ",demo-echo,") {
				t.Fatalf("CSV row outside the filter: %s", line)
			}
		}
		var rowsJSON []struct {
			Model string `json:"model"`
		}
		if err := json.Unmarshal(download("export-json"), &rowsJSON); err != nil || len(rowsJSON) != want {
			t.Fatalf("JSON export: %d rows, %v", len(rowsJSON), err)
		}

		// Another filter: failed requests only.
		tb.eval(`document.getElementById("f-model").value = ""; document.getElementById("f-status").value = "5xx"; ""`)
		tb.do("filter by status", chromedp.Click(chromedp.CSS(`form[role=search] button[type=submit]`)))
		tb.wait("5xx only", `location.search.includes("status=5xx") && !location.search.includes("model=") && !!document.querySelector('#main > .page[data-ready]')`)
		statuses := tb.eval(`[...document.querySelectorAll("#main tbody tr")].map(r => r.children[1].innerText).join(",")`)
		if statuses == "" || strings.Trim(statuses, "5,0123456789") != "" || strings.Contains(statuses, "200") {
			t.Fatalf("statuses under a 5xx filter: %q", statuses)
		}
	})

	t.Run("the plugins page follows instances and streams", func(t *testing.T) {
		tb := openTab(t, p)
		// Count the page's reads of /api/plugins, to see them stop once it
		// is left.
		if _, err := chromedp.Call(tb.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `
			window.__pluginReads = 0;
			const realFetch = window.fetch;
			window.fetch = function (input, init) {
				if (String(input).startsWith("/api/plugins")) window.__pluginReads++;
				return realFetch.call(this, input, init);
			};`}); err != nil {
			t.Fatal(err)
		}
		tb.login("alice", "alice password")
		tb.visit("/plugins")
		tb.wait("live connection", `document.querySelector(".livestate").dataset.state === "live"`)
		row := `document.querySelector('tr[data-stats-file="demo.wasm"]')`
		cell := func(class string) string { return row + `.querySelector(".` + class + `").innerText` }
		detail := `document.querySelector('tr[data-instances-of="demo.wasm"]')`
		scaledToZero := row + `.dataset.instances === "0" && ` + cell("instances .count") + ` === "0 (idle)" && ` + detail + `.hidden`

		// With no traffic for a second the demo plugin has no instance,
		// and the page says so rather than showing it as broken.
		tb.wait("demo scaled to zero", scaledToZero)
		tb.shot("idle")

		// The Replicas table lists this process with its plugins. Another
		// replica on the database (its heartbeat written here as its
		// process would) runs another build of demo and lacks openai: both
		// are marked.
		replica := `document.querySelector('tr[data-replica]')`
		tb.wait("this replica listed", replica+` && `+replica+`.innerText.includes("this one") && !!`+replica+`.querySelector('li[data-plugin="demo"][data-differs=""]')`)
		other := openDB(t, p.Config.Database.Path)
		if err := other.SeeReplica(ctx, store.Replica{ID: "replica-b", Hostname: "replica-b", Version: "dev",
			StartedAt: time.Now().UnixMilli(), SeenAt: time.Now().UnixMilli(),
			Plugins: `[{"name":"demo","version":"1.0.0","sha256":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff","state":"ready"}]`}); err != nil {
			t.Fatal(err)
		}
		rb := `document.querySelector('tr[data-replica="replica-b"]')`
		tb.wait("the other replica marked", rb+` && !!`+rb+`.querySelector('li[data-plugin="openai"][data-differs="missing"]') && `+rb+`.innerText.includes("001122334455")`)
		tb.shot("replicas")
		if err := other.RemoveReplica(ctx, "replica-b", 0); err != nil {
			t.Fatal(err)
		}

		// demo-story streams a word every 30 ms, for about a second: two
		// clients ask for one story after another until told to stop.
		stop := make(chan struct{})
		errs := make(chan error, 2)
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					s := p.client(adminKey).Chat.Completions.NewStreaming(ctx, chatParams("demo-story", "tell the plugins page"))
					for s.Next() {
					}
					err := s.Err()
					s.Close()
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		halt := sync.OnceFunc(func() { close(stop); wg.Wait() })
		defer halt()

		tb.wait("streams open", row+`.dataset.streams !== "0" && Number(`+cell("streams")+`) > 0 && Number(`+row+`.dataset.instances) > 0`)
		tb.wait("an instance shown under the row", `!`+detail+`.hidden && /^Instance \d+: \d+ streams? · \d+ queued · \d+\.\d MiB · [\d,]+ callbacks?/.test(`+
			detail+`.querySelector("li[data-instance-id]").innerText)`)
		tb.wait("callbacks counted", `/^\d+\.\d$/.test(`+cell("rate")+`) && `+cell("rate")+` !== "0.0" && `+cell("callbacks")+` !== "0" && `+cell("streamstotal")+` !== "0"`)
		tb.shot("streaming")
		tb.do("dark theme", chromedp.Click(chromedp.CSS(".topbar button[aria-live]")), chromedp.Click(chromedp.CSS(".topbar button[aria-live]")))
		tb.wait("dark", `document.documentElement.dataset.theme === "dark"`)
		tb.shot("streaming-dark")
		tb.do("system theme", chromedp.Click(chromedp.CSS(".topbar button[aria-live]")))

		halt()
		select {
		case err := <-errs:
			t.Fatalf("demo-story stream: %v", err)
		default:
		}
		tb.wait("no stream open", row+`.dataset.streams === "0" && `+cell("streams")+` === "0"`)
		tb.wait("scaled to zero again", scaledToZero)

		// The page shows what the API says.
		var list struct {
			Data []struct {
				File      string `json:"file"`
				Instances struct {
					StreamsTotal int64 `json:"streams_total"`
					Callbacks    int64 `json:"callbacks"`
				} `json:"instances"`
			} `json:"data"`
		}
		_, b := adminCall(t, p, "GET", "/api/plugins", "")
		if err := json.Unmarshal(b, &list); err != nil {
			t.Fatal(err)
		}
		for _, d := range list.Data {
			if d.File == "demo.wasm" {
				tb.wait("streams total as the API says", `Number(`+cell("streamstotal")+`.replace(/\D/g, "")) === `+strconv.FormatInt(d.Instances.StreamsTotal, 10))
			}
		}
		tb.shot("idle-again")

		// Away from the page, its refresh stops.
		tb.visit("/overview")
		before := tb.eval(`String(window.__pluginReads)`)
		time.Sleep(5 * time.Second)
		if after := tb.eval(`String(window.__pluginReads)`); after != before {
			t.Fatalf("/api/plugins read %s times before leaving the page, %s five seconds later", before, after)
		}
		if n, _ := strconv.Atoi(before); n < 3 {
			t.Fatalf("the plugins page read /api/plugins %d times in all", n)
		}
	})

	t.Run("uploading a new plugin version shows the reload", func(t *testing.T) {
		// A new build that says it is 1.0.1, as TestHotReloadUnderLoad makes.
		wasm := mustRead(t, testplugins.BuildID(t, "plugins/openai", "reload-test-v2"))
		manifest, _ := abi.ManifestFromWasm(wasm)
		v2, err := abi.WithManifest(wasm, []byte(strings.Replace(string(manifest), `"version": "1.0.0"`, `"version": "1.0.1"`, 1)))
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "openai.wasm")
		if err := os.WriteFile(file, v2, 0o644); err != nil {
			t.Fatal(err)
		}

		tb := openTab(t, p)
		tb.login("alice", "alice password")
		tb.visit("/plugins")
		tb.wait("live connection", `document.querySelector(".livestate").dataset.state === "live"`)
		tb.wait("version 1.0.0 listed", `!!document.querySelector('tr[data-plugin-file="openai.wasm"][data-version="1.0.0"]')`)
		tb.do("choose the file", chromedp.SetUploadFiles(chromedp.ID("plugin-file"), []string{file}))
		tb.wait("name taken from the file", `document.getElementById("plugin-name").value === "openai.wasm"`)
		tb.shot("chosen")
		tb.do("upload", chromedp.Click(chromedp.CSS(`#main form button[type=submit]`)))
		row := `tr[data-plugin-file="openai.wasm"]`
		tb.wait("reloaded", `!!document.querySelector('`+row+`[data-version="1.0.1"][data-state="ready"]') && document.querySelector('`+row+` .reloads').innerText === "1"`)
		tb.wait("told", `[...document.querySelectorAll(".toast")].some(t => t.innerText.includes("openai reloaded: version 1.0.1"))`+
			` && (document.querySelector("#main .banner.ok")?.innerText || "").includes("openai 1.0.1")`)
		tb.shot("reloaded")
		if _, err := p.client(adminKey).Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "after upload")); err != nil {
			t.Fatal(err)
		}
	})
}
