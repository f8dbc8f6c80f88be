package fakeupstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func startServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func do(t *testing.T, method, url, body string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, b
}

func post(t *testing.T, url, body string) (*http.Response, []byte) {
	t.Helper()
	return do(t, http.MethodPost, url, body, nil)
}

// Shapes used to decode responses in tests. Pointers tell null from absent
// where that matters.
type usageJSON struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails *struct {
		CachedTokens *int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails *struct {
		ReasoningTokens *int `json:"reasoning_tokens"`
	} `json:"completion_tokens_details"`
}

type toolCallJSON struct {
	Index    *int   `json:"index"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type completionJSON struct {
	ID                string `json:"id"`
	Object            string `json:"object"`
	Created           int64  `json:"created"`
	Model             string `json:"model"`
	SystemFingerprint string `json:"system_fingerprint"`
	Choices           []struct {
		Index   int `json:"index"`
		Message struct {
			Role      string         `json:"role"`
			Content   *string        `json:"content"`
			ToolCalls []toolCallJSON `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage usageJSON `json:"usage"`
}

type chunkJSON struct {
	ID                string `json:"id"`
	Object            string `json:"object"`
	Created           int64  `json:"created"`
	Model             string `json:"model"`
	SystemFingerprint string `json:"system_fingerprint"`
	Choices           []struct {
		Index int `json:"index"`
		Delta struct {
			Role      string         `json:"role"`
			Content   *string        `json:"content"`
			ToolCalls []toolCallJSON `json:"tool_calls"`
		} `json:"delta"`
		Logprobs     json.RawMessage `json:"logprobs"`
		FinishReason *string         `json:"finish_reason"`
	} `json:"choices"`
	Usage *usageJSON `json:"usage"`

	raw map[string]json.RawMessage
}

// readEvents reads the data payloads of a server-sent event stream. It
// returns what it got before any read error, and that error.
func readEvents(r io.Reader) ([]string, error) {
	var out []string
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF && line == "" {
				return out, nil
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return out, err
		}
		line = strings.TrimRight(line, "\r\n")
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			out = append(out, data)
		} else if line != "" {
			return out, errors.New("unexpected SSE line: " + line)
		}
	}
}

// decodeStream checks the framing of a complete stream and decodes its chunks.
func decodeStream(t *testing.T, events []string) []chunkJSON {
	t.Helper()
	if len(events) == 0 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("stream does not end with [DONE]: %q", events)
	}
	var chunks []chunkJSON
	for _, ev := range events[:len(events)-1] {
		var c chunkJSON
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatalf("chunk %q: %v", ev, err)
		}
		if err := json.Unmarshal([]byte(ev), &c.raw); err != nil {
			t.Fatal(err)
		}
		if c.Object != "chat.completion.chunk" {
			t.Fatalf("object = %q", c.Object)
		}
		chunks = append(chunks, c)
	}
	for _, c := range chunks[1:] {
		if c.ID != chunks[0].ID || c.Created != chunks[0].Created || c.Model != chunks[0].Model {
			t.Fatalf("chunks disagree on id/created/model: %+v vs %+v", c, chunks[0])
		}
	}
	return chunks
}

func streamChat(t *testing.T, url, body string) []chunkJSON {
	t.Helper()
	resp, err := http.Post(url+"/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	events, err := readEvents(resp.Body)
	if err != nil {
		t.Fatalf("reading stream: %v", err)
	}
	return decodeStream(t, events)
}

func TestModels(t *testing.T) {
	s := startServer(t, Options{})
	resp, body := do(t, http.MethodGet, s.URL+"/models", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			Created int64  `json:"created"`
			OwnedBy string `json:"owned_by"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	if list.Object != "list" || len(list.Data) != len(ModelIDs()) {
		t.Fatalf("unexpected list: %s", body)
	}
	for i, m := range list.Data {
		if m.ID != ModelIDs()[i] || m.Object != "model" || m.OwnedBy != "fake" || m.Created == 0 {
			t.Fatalf("bad model entry %+v", m)
		}
	}

	resp, body = do(t, http.MethodGet, s.URL+"/models/gpt-4o", "", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"id":"gpt-4o"`) {
		t.Fatalf("retrieve: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodGet, s.URL+"/models/nope", "", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("retrieve unknown: %d %s", resp.StatusCode, body)
	}
	checkErrorBody(t, body, "invalid_request_error", "model_not_found")
}

func TestChatNonStream(t *testing.T) {
	s := startServer(t, Options{})
	resp, body := post(t, s.URL+"/chat/completions", `{
		"model": "gpt-4o-mini",
		"n": 3,
		"messages": [
			{"role": "system", "content": "be brief"},
			{"role": "user", "content": "hello   there"},
			{"role": "assistant", "content": "hi"},
			{"role": "user", "content": "say \"something\"\nnice"}
		]}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	var c completionJSON
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if !strings.HasPrefix(c.ID, "chatcmpl-") || c.Object != "chat.completion" || c.Model != "gpt-4o-mini" ||
		c.Created == 0 || c.SystemFingerprint == "" {
		t.Fatalf("bad envelope: %s", body)
	}
	if len(c.Choices) != 1 {
		t.Fatalf("choices: %s", body)
	}
	ch := c.Choices[0]
	want := "echo: say \"something\"\nnice"
	if ch.Message.Role != "assistant" || ch.Message.Content == nil || *ch.Message.Content != want || ch.FinishReason != "stop" {
		t.Fatalf("bad choice: %s", body)
	}
	// words: "be brief" 2 + "hello there" 2 + "hi" 1 + 3 = 8
	if c.Usage.PromptTokens != 8 || c.Usage.CompletionTokens != 4 || c.Usage.TotalTokens != 12 {
		t.Fatalf("usage = %+v", c.Usage)
	}
	if c.Usage.PromptTokensDetails == nil || c.Usage.PromptTokensDetails.CachedTokens == nil ||
		c.Usage.CompletionTokensDetails == nil || c.Usage.CompletionTokensDetails.ReasoningTokens == nil {
		t.Fatalf("usage details missing: %s", body)
	}
}

// TestUsageCounters: Usage adds up the usage objects sent, in answers and
// in usage chunks, and nothing for a stream without one.
func TestUsageCounters(t *testing.T) {
	s := startServer(t, Options{})
	post(t, s.URL+"/chat/completions", `{"model":"m","messages":[{"role":"user","content":"one two three"}]}`)
	if p, c := s.Usage(); p != 3 || c != 4 {
		t.Fatalf("after an answer: %d %d", p, c)
	}
	streamChat(t, s.URL, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"a b"}]}`)
	if p, c := s.Usage(); p != 5 || c != 7 {
		t.Fatalf("after a stream with usage: %d %d", p, c)
	}
	streamChat(t, s.URL, `{"model":"m","stream":true,"messages":[{"role":"user","content":"a b"}]}`)
	post(t, s.URL+"/chat/completions", `{"model":"`+ModelFail500+`","messages":[{"role":"user","content":"x"}]}`)
	if p, c := s.Usage(); p != 5 || c != 7 {
		t.Fatalf("a stream without usage or a failure counted: %d %d", p, c)
	}
}

func TestChatContentParts(t *testing.T) {
	s := startServer(t, Options{})
	_, body := post(t, s.URL+"/chat/completions", `{"model":"m","messages":[{"role":"user","content":[
		{"type":"text","text":"first part"},
		{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}},
		{"type":"text","text":"second"}]}]}`)
	var c completionJSON
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	if got := *c.Choices[0].Message.Content; got != "echo: first part second" {
		t.Fatalf("content = %q", got)
	}
	if c.Usage.PromptTokens != 3 {
		t.Fatalf("prompt tokens = %d", c.Usage.PromptTokens)
	}
}

func TestChatEmptyPromptCountsOneToken(t *testing.T) {
	s := startServer(t, Options{})
	_, body := post(t, s.URL+"/chat/completions", `{"model":"m","messages":[]}`)
	var c completionJSON
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	if *c.Choices[0].Message.Content != "echo: " || c.Usage.PromptTokens != 1 {
		t.Fatalf("unexpected: %s", body)
	}
}

func TestStreamMatchesNonStream(t *testing.T) {
	const msgs = `"messages":[{"role":"user","content":"Grüße, 世界! a b c d e f g h i j k"}]`
	for _, chunksOpt := range []int{0, 1, 3, 40} {
		s := startServer(t, Options{Chunks: chunksOpt})
		_, body := post(t, s.URL+"/chat/completions", `{"model":"gpt-4o",`+msgs+`}`)
		var full completionJSON
		if err := json.Unmarshal(body, &full); err != nil {
			t.Fatal(err)
		}
		wantText := *full.Choices[0].Message.Content

		for _, includeUsage := range []bool{false, true} {
			req := `{"model":"gpt-4o","stream":true,` + msgs + `}`
			if includeUsage {
				req = `{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},` + msgs + `}`
			}
			chunks := streamChat(t, s.URL, req)

			wantContent := chunksOpt
			if wantContent <= 0 {
				wantContent = DefaultChunks
			}
			wantLen := 1 + wantContent + 1 // role, content, finish
			if includeUsage {
				wantLen++
			}
			if len(chunks) != wantLen {
				t.Fatalf("chunks=%d usage=%v: got %d chunks, want %d", chunksOpt, includeUsage, len(chunks), wantLen)
			}

			first := chunks[0]
			if len(first.Choices) != 1 || first.Choices[0].Delta.Role != "assistant" ||
				first.Choices[0].Delta.Content == nil || *first.Choices[0].Delta.Content != "" ||
				first.Choices[0].FinishReason != nil {
				t.Fatalf("bad first chunk %+v", first)
			}
			var sb strings.Builder
			for _, c := range chunks[1 : 1+wantContent] {
				if len(c.Choices) != 1 || c.Choices[0].Delta.Content == nil || c.Choices[0].FinishReason != nil {
					t.Fatalf("bad content chunk %+v", c)
				}
				if string(c.Choices[0].Logprobs) != "null" {
					t.Fatalf("logprobs = %s", c.Choices[0].Logprobs)
				}
				sb.WriteString(*c.Choices[0].Delta.Content)
			}
			if sb.String() != wantText {
				t.Fatalf("stream text %q, non-stream %q", sb.String(), wantText)
			}
			fin := chunks[1+wantContent]
			if len(fin.Choices) != 1 || fin.Choices[0].FinishReason == nil || *fin.Choices[0].FinishReason != "stop" ||
				fin.Choices[0].Delta.Content != nil || fin.Choices[0].Delta.Role != "" {
				t.Fatalf("bad finish chunk %+v", fin)
			}

			for i, c := range chunks {
				raw, has := c.raw["usage"]
				last := includeUsage && i == len(chunks)-1
				switch {
				case !includeUsage && has:
					t.Fatalf("chunk %d has usage without include_usage", i)
				case includeUsage && !last && string(raw) != "null":
					t.Fatalf("chunk %d usage = %s, want null", i, raw)
				case last:
					if string(c.raw["choices"]) != "[]" || c.Usage == nil {
						t.Fatalf("bad usage chunk: %v", c.raw)
					}
					if c.Usage.PromptTokens != full.Usage.PromptTokens || c.Usage.CompletionTokens != full.Usage.CompletionTokens ||
						c.Usage.TotalTokens != full.Usage.TotalTokens {
						t.Fatalf("stream usage %+v, non-stream %+v", *c.Usage, full.Usage)
					}
				}
			}
		}
	}
}

func TestStreamChunkDelay(t *testing.T) {
	s := startServer(t, Options{Chunks: 4, ChunkDelay: 20 * time.Millisecond})
	start := time.Now()
	chunks := streamChat(t, s.URL, `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	// role + 4 content + finish = 6 chunks, then [DONE]: 6 pauses.
	if len(chunks) != 6 {
		t.Fatalf("got %d chunks", len(chunks))
	}
	if el := time.Since(start); el < 6*20*time.Millisecond {
		t.Fatalf("stream took %v, expected at least 120ms", el)
	}
}

const toolsJSON = `"tools":[
	{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},
	{"type":"function","function":{"name":"other"}}]`

func TestToolCallNonStream(t *testing.T) {
	s := startServer(t, Options{})
	_, body := post(t, s.URL+"/chat/completions",
		`{"model":"m",`+toolsJSON+`,"messages":[{"role":"user","content":"weather?"}]}`)
	var c completionJSON
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	ch := c.Choices[0]
	if ch.FinishReason != "tool_calls" || ch.Message.Content != nil || len(ch.Message.ToolCalls) != 1 {
		t.Fatalf("bad tool answer: %s", body)
	}
	tc := ch.Message.ToolCalls[0]
	if !strings.HasPrefix(tc.ID, "call_") || tc.Type != "function" || tc.Function.Name != "get_weather" ||
		tc.Function.Arguments != `{"city":"Paris"}` {
		t.Fatalf("bad tool call: %s", body)
	}
	if !strings.Contains(string(body), `"content":null`) {
		t.Fatalf("content should be null: %s", body)
	}

	// tool_choice "none" turns the tools off.
	_, body = post(t, s.URL+"/chat/completions",
		`{"model":"m",`+toolsJSON+`,"tool_choice":"none","messages":[{"role":"user","content":"weather?"}]}`)
	if !strings.Contains(string(body), `"content":"echo: weather?"`) {
		t.Fatalf("tool_choice none: %s", body)
	}
}

func TestToolResultAnswer(t *testing.T) {
	s := startServer(t, Options{})
	msgs := `"messages":[
		{"role":"user","content":"weather?"},
		{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},
		{"role":"tool","tool_call_id":"call_1","content":"sunny, 21C"}]`
	_, body := post(t, s.URL+"/chat/completions", `{"model":"m",`+toolsJSON+`,`+msgs+`}`)
	var c completionJSON
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	if c.Choices[0].FinishReason != "stop" || *c.Choices[0].Message.Content != "tool said: sunny, 21C" {
		t.Fatalf("bad answer: %s", body)
	}
	chunks := streamChat(t, s.URL, `{"model":"m","stream":true,`+toolsJSON+`,`+msgs+`}`)
	var sb strings.Builder
	for _, ch := range chunks {
		if len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != nil {
			sb.WriteString(*ch.Choices[0].Delta.Content)
		}
	}
	if sb.String() != "tool said: sunny, 21C" {
		t.Fatalf("streamed %q", sb.String())
	}
}

func TestToolCallStream(t *testing.T) {
	s := startServer(t, Options{})
	chunks := streamChat(t, s.URL, `{"model":"m","stream":true,"stream_options":{"include_usage":true},`+
		toolsJSON+`,"messages":[{"role":"user","content":"weather?"}]}`)
	// first (id/name), two argument pieces, finish, usage
	if len(chunks) != 5 {
		t.Fatalf("got %d chunks", len(chunks))
	}
	first := chunks[0].Choices[0].Delta
	if first.Role != "assistant" || len(first.ToolCalls) != 1 {
		t.Fatalf("bad first chunk %+v", chunks[0])
	}
	if _, ok := chunks[0].raw["choices"]; !ok || !strings.Contains(string(chunks[0].raw["choices"]), `"content":null`) {
		t.Fatalf("first delta should carry content null: %s", chunks[0].raw["choices"])
	}
	tc := first.ToolCalls[0]
	if tc.Index == nil || *tc.Index != 0 || !strings.HasPrefix(tc.ID, "call_") || tc.Type != "function" ||
		tc.Function.Name != "get_weather" || tc.Function.Arguments != "" {
		t.Fatalf("bad first tool delta %+v", tc)
	}
	args := ""
	for _, c := range chunks[1:3] {
		d := c.Choices[0].Delta
		if len(d.ToolCalls) != 1 || d.ToolCalls[0].Index == nil || *d.ToolCalls[0].Index != 0 ||
			d.ToolCalls[0].ID != "" || d.ToolCalls[0].Function.Name != "" {
			t.Fatalf("bad argument delta %+v", c)
		}
		args += d.ToolCalls[0].Function.Arguments
	}
	if args != `{"city":"Paris"}` {
		t.Fatalf("arguments = %q", args)
	}
	if fr := chunks[3].Choices[0].FinishReason; fr == nil || *fr != "tool_calls" {
		t.Fatalf("bad finish chunk %+v", chunks[3])
	}
	if chunks[4].Usage == nil || chunks[4].Usage.CompletionTokens == 0 {
		t.Fatalf("bad usage chunk %+v", chunks[4])
	}
}

func checkErrorBody(t *testing.T, body []byte, typ, code string) {
	t.Helper()
	var e struct {
		Error *struct {
			Message string          `json:"message"`
			Type    string          `json:"type"`
			Param   json.RawMessage `json:"param"`
			Code    json.RawMessage `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil {
		t.Fatalf("not an OpenAI error: %s", body)
	}
	if e.Error.Message == "" || e.Error.Type != typ || e.Error.Param == nil {
		t.Fatalf("bad error body: %s", body)
	}
	wantCode := "null"
	if code != "" {
		wantCode = `"` + code + `"`
	}
	if string(e.Error.Code) != wantCode {
		t.Fatalf("code = %s, want %s (body %s)", e.Error.Code, wantCode, body)
	}
}

func TestFailureModels(t *testing.T) {
	s := startServer(t, Options{})
	for _, path := range []string{"/chat/completions", "/embeddings"} {
		for _, stream := range []string{"false", "true"} {
			body := func(model string) string {
				return `{"model":"` + model + `","stream":` + stream + `,"input":"x","messages":[{"role":"user","content":"x"}]}`
			}
			resp, b := post(t, s.URL+path, body(ModelFail429))
			if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "7" {
				t.Fatalf("429: %d %v", resp.StatusCode, resp.Header)
			}
			if string(b) != `{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}` {
				t.Fatalf("429 body: %s", b)
			}

			resp, b = post(t, s.URL+path, body(ModelFail500))
			if resp.StatusCode != http.StatusInternalServerError {
				t.Fatalf("500: %d", resp.StatusCode)
			}
			if string(b) != `{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}` {
				t.Fatalf("500 body: %s", b)
			}

			resp, b = post(t, s.URL+path, body(ModelFail400))
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("400: %d", resp.StatusCode)
			}
			checkErrorBody(t, b, "invalid_request_error", "")
		}
	}
}

func TestMalformedJSONAndNotFound(t *testing.T) {
	s := startServer(t, Options{})
	for _, path := range []string{"/chat/completions", "/embeddings"} {
		resp, b := post(t, s.URL+path, `{"model": "m", "messages": [`)
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		checkErrorBody(t, b, "invalid_request_error", "")
	}
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/nope"},
		{http.MethodGet, "/chat/completions"},
		{http.MethodPost, "/models"},
	} {
		resp, b := do(t, tc.method, s.URL+tc.path, "", nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s %s: status %d", tc.method, tc.path, resp.StatusCode)
		}
		checkErrorBody(t, b, "invalid_request_error", "")
	}
	resp, b := do(t, http.MethodGet, strings.TrimSuffix(s.URL, "/v1")+"/other", "", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("outside /v1: status %d", resp.StatusCode)
	}
	checkErrorBody(t, b, "invalid_request_error", "")
}

func TestAuth(t *testing.T) {
	s := startServer(t, Options{APIKey: "sk-test"})
	chat := `{"model":"m","messages":[{"role":"user","content":"x"}]}`
	for _, hdr := range []map[string]string{
		nil,
		{"Authorization": "Bearer wrong"},
		{"Authorization": "sk-test"},
	} {
		resp, b := do(t, http.MethodPost, s.URL+"/chat/completions", chat, hdr)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%v: status %d", hdr, resp.StatusCode)
		}
		code := "invalid_api_key"
		if hdr == nil {
			code = ""
		}
		checkErrorBody(t, b, "invalid_request_error", code)
	}
	ok := map[string]string{"Authorization": "Bearer sk-test"}
	if resp, b := do(t, http.MethodPost, s.URL+"/chat/completions", chat, ok); resp.StatusCode != http.StatusOK {
		t.Fatalf("good key: %d %s", resp.StatusCode, b)
	}
	if resp, _ := do(t, http.MethodGet, s.URL+"/models", "", ok); resp.StatusCode != http.StatusOK {
		t.Fatalf("models with good key: %d", resp.StatusCode)
	}
	if resp, _ := do(t, http.MethodGet, s.URL+"/models", "", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("models without key: %d", resp.StatusCode)
	}
}

func TestSlowHeaders(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})

	// A client that gives up early gets its error quickly, and the handler
	// stops waiting.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/chat/completions",
		strings.NewReader(`{"model":"slow-headers","stream":true,"messages":[{"role":"user","content":"x"}]}`))
	start := time.Now()
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("expected a timeout")
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("timeout took %v", el)
	}
	waitFor(t, func() bool { return s.Canceled() == 1 })

	// A patient client gets the normal answer after the delay.
	start = time.Now()
	resp, body := post(t, s.URL+"/chat/completions", `{"model":"slow-headers","messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"content":"echo: x"`) {
		t.Fatalf("slow answer: %d %s", resp.StatusCode, body)
	}
	if el := time.Since(start); el < SlowHeadersDelay {
		t.Fatalf("answered after %v, before the %v delay", el, SlowHeadersDelay)
	}
}

func TestCloseDoesNotWaitForSlowHeaders(t *testing.T) {
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Post(s.URL+"/chat/completions", "application/json",
			strings.NewReader(`{"model":"slow-headers","messages":[]}`))
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, func() bool { return len(s.Requests()) == 1 })
	start := time.Now()
	s.Close()
	if el := time.Since(start); el > time.Second {
		t.Fatalf("Close took %v", el)
	}
	<-errc
	if s.Canceled() != 0 {
		t.Fatalf("Close counted as a client cancel")
	}
}

func TestStreamErrorMidway(t *testing.T) {
	s := startServer(t, Options{})
	resp, err := http.Post(s.URL+"/chat/completions", "application/json",
		strings.NewReader(`{"model":"stream-error-midway","stream":true,"messages":[{"role":"user","content":"one two three four five six"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events, err := readEvents(resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read error = %v, want unexpected EOF (events %q)", err, events)
	}
	if len(events) != 3 { // role chunk + 2 content chunks
		t.Fatalf("got %d events before the cut: %q", len(events), events)
	}
	for _, ev := range events {
		var c chunkJSON
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatalf("chunk %q: %v", ev, err)
		}
	}
	// The server is still healthy afterwards.
	if resp, _ := post(t, s.URL+"/chat/completions", `{"model":"m","messages":[]}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("status after cut: %d", resp.StatusCode)
	}
	if s.Canceled() != 0 {
		t.Fatalf("server-side cut counted as a cancel")
	}

	// Without streaming the model answers normally.
	_, body := post(t, s.URL+"/chat/completions", `{"model":"stream-error-midway","messages":[{"role":"user","content":"x"}]}`)
	if !strings.Contains(string(body), `"content":"echo: x"`) {
		t.Fatalf("non-stream: %s", body)
	}
}

func TestSlowStreamClientAbortIsCounted(t *testing.T) {
	s := startServer(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/chat/completions",
		strings.NewReader(`{"model":"slow-stream","stream":true,"messages":[{"role":"user","content":"x"}]}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for range 3 { // role chunk and two content chunks
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(line, "data: ") {
				break
			}
		}
	}
	if got := s.Canceled(); got != 0 {
		t.Fatalf("Canceled = %d before abort", got)
	}
	cancel()
	resp.Body.Close()
	waitFor(t, func() bool { return s.Canceled() == 1 })

	// A complete stream is not counted.
	streamChat(t, s.URL, `{"model":"m","stream":true,"messages":[]}`)
	time.Sleep(50 * time.Millisecond)
	if got := s.Canceled(); got != 1 {
		t.Fatalf("Canceled = %d after a complete stream", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBigOutput(t *testing.T) {
	s := startServer(t, Options{})
	_, body := post(t, s.URL+"/chat/completions", `{"model":"big-output","messages":[{"role":"user","content":"x"}]}`)
	var c completionJSON
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	text := *c.Choices[0].Message.Content
	if len(text) != BigOutputSize {
		t.Fatalf("content is %d bytes", len(text))
	}
	if c.Usage.CompletionTokens != countWords(text) {
		t.Fatalf("completion tokens %d", c.Usage.CompletionTokens)
	}
	chunks := streamChat(t, s.URL, `{"model":"big-output","stream":true,"messages":[]}`)
	var sb strings.Builder
	for _, ch := range chunks {
		if ch.Choices[0].Delta.Content != nil {
			sb.WriteString(*ch.Choices[0].Delta.Content)
		}
	}
	if sb.String() != text {
		t.Fatal("streamed big output differs")
	}
}

func TestEmbeddings(t *testing.T) {
	s := startServer(t, Options{})
	type embResp struct {
		Object string `json:"object"`
		Data   []struct {
			Object    string          `json:"object"`
			Index     int             `json:"index"`
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
		Model string `json:"model"`
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
			TotalTokens  int `json:"total_tokens"`
		} `json:"usage"`
	}
	get := func(body string) embResp {
		t.Helper()
		resp, b := post(t, s.URL+"/embeddings", body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		var r embResp
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		if r.Object != "list" || r.Model != "text-embedding-3-small" {
			t.Fatalf("bad envelope: %s", b)
		}
		for i, d := range r.Data {
			if d.Object != "embedding" || d.Index != i {
				t.Fatalf("bad item %d: %s", i, b)
			}
		}
		return r
	}
	floats := func(raw json.RawMessage) []float32 {
		t.Helper()
		var v []float32
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}

	one := get(`{"model":"text-embedding-3-small","input":"hello world"}`)
	if len(one.Data) != 1 || one.Usage.PromptTokens != 2 || one.Usage.TotalTokens != 2 {
		t.Fatalf("bad single response %+v", one)
	}
	v := floats(one.Data[0].Embedding)
	if len(v) != DefaultEmbeddingDimensions {
		t.Fatalf("got %d dims", len(v))
	}
	want := Embedding("hello world", 0)
	var norm float64
	for i := range v {
		if v[i] != want[i] {
			t.Fatalf("vector %v, want %v", v, want)
		}
		norm += float64(v[i]) * float64(v[i])
	}
	if math.Abs(norm-1) > 1e-5 {
		t.Fatalf("norm² = %v", norm)
	}

	many := get(`{"model":"text-embedding-3-small","input":["hello world","other text here"]}`)
	if len(many.Data) != 2 || many.Usage.PromptTokens != 5 {
		t.Fatalf("bad batch response %+v", many)
	}
	if !slicesEqual(floats(many.Data[0].Embedding), v) || slicesEqual(floats(many.Data[1].Embedding), v) {
		t.Fatal("batch vectors are not deterministic per input")
	}

	b64 := get(`{"model":"text-embedding-3-small","input":["hello world"],"encoding_format":"base64"}`)
	var enc string
	if err := json.Unmarshal(b64.Data[0].Embedding, &enc); err != nil {
		t.Fatalf("base64 embedding is not a string: %s", b64.Data[0].Embedding)
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(raw) != 4*DefaultEmbeddingDimensions {
		t.Fatalf("bad base64 %q: %v", enc, err)
	}
	for i := range v {
		if f := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])); f != v[i] {
			t.Fatalf("base64 value %d = %v, want %v", i, f, v[i])
		}
	}

	tok := get(`{"model":"text-embedding-3-small","input":[1, 2, 3]}`)
	tok2 := get(`{"model":"text-embedding-3-small","input":[[1,2,3],[4]],"dimensions":16}`)
	if len(tok.Data) != 1 || tok.Usage.PromptTokens != 3 || len(tok2.Data) != 2 || tok2.Usage.PromptTokens != 4 {
		t.Fatalf("token inputs: %+v %+v", tok, tok2)
	}
	if len(floats(tok2.Data[0].Embedding)) != 16 {
		t.Fatal("dimensions ignored")
	}
	if !slicesEqual(floats(tok.Data[0].Embedding), floats(get(`{"model":"text-embedding-3-small","input":[1,2,3]}`).Data[0].Embedding)) {
		t.Fatal("token vectors not deterministic")
	}

	for _, bad := range []string{`{"model":"m"}`, `{"model":"m","input":[]}`, `{"model":"m","input":{}}`, `{"model":"m","input":[1,"a"]}`} {
		resp, b := post(t, s.URL+"/embeddings", bad)
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s: status %d", bad, resp.StatusCode)
		}
		checkErrorBody(t, b, "invalid_request_error", "")
	}
}

func slicesEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRequestsRecorded(t *testing.T) {
	s := startServer(t, Options{})
	body := `{"model":"m","messages":[]}`
	do(t, http.MethodPost, s.URL+"/chat/completions?x=1", body, map[string]string{"X-Test": "yes"})
	do(t, http.MethodGet, s.URL+"/models", "", nil)
	reqs := s.Requests()
	if len(reqs) != 2 {
		t.Fatalf("got %d records", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.Path != "/v1/chat/completions" || r.Query != "x=1" ||
		r.Header.Get("X-Test") != "yes" || string(r.Body) != body {
		t.Fatalf("bad record %+v", r)
	}
	if reqs[1].Method != http.MethodGet || reqs[1].Path != "/v1/models" {
		t.Fatalf("bad record %+v", reqs[1])
	}

	quiet := startServer(t, Options{DisableRecording: true})
	do(t, http.MethodGet, quiet.URL+"/models", "", nil)
	if n := len(quiet.Requests()); n != 0 {
		t.Fatalf("recorded %d requests with recording disabled", n)
	}
}

func TestHandlerMountable(t *testing.T) {
	s := startServer(t, Options{Chunks: 2})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	chunks := streamChat(t, ts.URL+"/v1", `{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`)
	if len(chunks) != 4 {
		t.Fatalf("got %d chunks", len(chunks))
	}
	if len(s.Requests()) != 1 {
		t.Fatal("mounted handler does not share the request log")
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " backslash \ slash /`, "\n\r\t\b\f\x00\x1f\x7f",
		"ünïcödé 世界 🙂", "line\u2028sep\u2029", "<html>&amp;</html>",
	} {
		var got string
		enc := appendJSONString(nil, s)
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("%q encoded as invalid JSON %s: %v", s, enc, err)
		}
		if got != s {
			t.Fatalf("round trip of %q gave %q", s, got)
		}
	}
	var got string
	if err := json.Unmarshal(appendJSONString(nil, "a\xffb"), &got); err != nil || got != "a\uFFFDb" {
		t.Fatalf("invalid UTF-8: %q %v", got, err)
	}
}

func TestSplitText(t *testing.T) {
	for _, s := range []string{"", "ab", "echo: hello", "世界世界世界", strings.Repeat("é", 101)} {
		for n := 1; n <= 12; n++ {
			parts := splitText(s, n)
			if len(parts) != n || strings.Join(parts, "") != s {
				t.Fatalf("splitText(%q, %d) = %q", s, n, parts)
			}
			for _, p := range parts {
				if !utf8.ValidString(p) {
					t.Fatalf("splitText(%q, %d) cut a rune: %q", s, n, parts)
				}
			}
		}
	}
}

func TestCountWords(t *testing.T) {
	for s, want := range map[string]int{"": 0, "  ": 0, "a": 1, " a  b\n\tc ": 3, "echo: x": 2} {
		if got := countWords(s); got != want {
			t.Fatalf("countWords(%q) = %d, want %d", s, got, want)
		}
	}
}

func BenchmarkChatStream(b *testing.B) {
	s := newServer(Options{DisableRecording: true})
	h := s.Handler()
	body := []byte(`{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello there, how are you"}]}`)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(body))
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}

func BenchmarkChat(b *testing.B) {
	s := newServer(Options{DisableRecording: true})
	h := s.Handler()
	body := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there, how are you"}]}`)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(body))
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}
