package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/plugintest"
)

func run(t *testing.T, op abi.Op, request string) *plugintest.Result {
	t.Helper()
	res := plugintest.Run(plugin{}, op, []byte(request), plugintest.Options{Provider: "demo"})
	if res.Ret != 0 {
		t.Fatalf("a callback returned %d; logs %v", res.Ret, res.Logs)
	}
	return res
}

// body returns the run's only emit, a body, decoded into v.
func body(t *testing.T, res *plugintest.Result, v any) {
	t.Helper()
	if len(res.Emits) != 1 || res.Emits[0].Kind != "body" {
		t.Fatalf("emits %v, want one body", res.Emits)
	}
	if err := json.Unmarshal(res.Emits[0].Data, v); err != nil {
		t.Fatalf("body %s: %v", res.Emits[0].Data, err)
	}
}

type chunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta *struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
}

// TestChatEcho: demo-echo answers with the last user message, text parts
// of an array content included.
func TestChatEcho(t *testing.T) {
	res := run(t, abi.OpChat, `{"model":"demo-echo","messages":[`+
		`{"role":"system","content":"be brief"},`+
		`{"role":"user","content":"first"},`+
		`{"role":"user","content":[{"type":"text","text":"hello "},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"there"}]}]}`)
	var b struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage usage `json:"usage"`
	}
	body(t, res, &b)
	if b.Object != "chat.completion" || b.Model != "demo-echo" || !strings.HasPrefix(b.ID, "chatcmpl-demo") {
		t.Fatalf("body %s", res.Emits[0].Data)
	}
	if len(b.Choices) != 1 || b.Choices[0].Message.Role != "assistant" || b.Choices[0].Message.Content != "You said: hello there" ||
		b.Choices[0].FinishReason != "stop" {
		t.Fatalf("choices %+v", b.Choices)
	}
	// Prompt: "be brief", "first", "hello there"; completion: "You said: hello there".
	if b.Usage != (usage{PromptTokens: 5, CompletionTokens: 4, TotalTokens: 9}) {
		t.Fatalf("usage %+v", b.Usage)
	}
}

// TestChatBadRequest: a request that is not JSON is the client's error.
func TestChatBadRequest(t *testing.T) {
	res := run(t, abi.OpChat, `{"model":`)
	if len(res.Emits) != 1 || res.Emits[0].Kind != "fail" || res.Emits[0].Status != 400 {
		t.Fatalf("emits %v", res.Emits)
	}
}

// stream runs a chat_stream and checks what every answer has: a role chunk
// first, a content chunk per word of want, the finish chunk, the usage
// chunk last, all with the same id, created and model, and the end.
func stream(t *testing.T, model, content string, want string) *plugintest.Result {
	t.Helper()
	res := run(t, abi.OpChatStream, `{"model":"`+model+`","stream":true,"messages":[{"role":"user","content":"`+content+`"}]}`)
	if !res.Finished {
		t.Fatalf("not finished; emits %v", res.Emits)
	}
	words := strings.SplitAfter(want, " ")
	if len(res.Emits) != len(words)+3 {
		t.Fatalf("%d emits, want %d: %v", len(res.Emits), len(words)+3, res.Emits)
	}
	var first chunk
	var text strings.Builder
	for i, e := range res.Emits {
		if e.Kind != "chunk" {
			t.Fatalf("emit %d is %s", i, e)
		}
		var c chunk
		if err := json.Unmarshal(e.Data, &c); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
		if i == 0 {
			first = c
			if c.Object != "chat.completion.chunk" || c.Model != model || !strings.HasPrefix(c.ID, "chatcmpl-demo") || c.Created == 0 {
				t.Fatalf("first chunk %s", e.Data)
			}
		} else if c.ID != first.ID || c.Created != first.Created || c.Model != model || c.Object != first.Object {
			t.Fatalf("chunk %d %s differs from the first %s", i, e.Data, res.Emits[0].Data)
		}
		last := len(res.Emits) - 1
		switch {
		case i == 0:
			if len(c.Choices) != 1 || c.Choices[0].Delta == nil || c.Choices[0].Delta.Role == nil || *c.Choices[0].Delta.Role != "assistant" ||
				c.Choices[0].Delta.Content == nil || *c.Choices[0].Delta.Content != "" || c.Choices[0].FinishReason != nil || c.Usage != nil {
				t.Fatalf("role chunk %s", e.Data)
			}
		case i == last-1:
			if len(c.Choices) != 1 || c.Choices[0].FinishReason == nil || *c.Choices[0].FinishReason != "stop" || c.Usage != nil {
				t.Fatalf("finish chunk %s", e.Data)
			}
		case i == last:
			u := usage{PromptTokens: max(len(strings.Fields(content)), 1), CompletionTokens: len(strings.Fields(want))}
			u.TotalTokens = u.PromptTokens + u.CompletionTokens
			if len(c.Choices) != 0 || c.Usage == nil || *c.Usage != u {
				t.Fatalf("usage chunk %s, want usage %+v", e.Data, u)
			}
		default:
			if len(c.Choices) != 1 || c.Choices[0].Delta == nil || c.Choices[0].Delta.Content == nil || c.Choices[0].Delta.Role != nil ||
				c.Choices[0].FinishReason != nil || c.Usage != nil {
				t.Fatalf("content chunk %d %s", i, e.Data)
			}
			if got := *c.Choices[0].Delta.Content; got != words[i-1] {
				t.Fatalf("content chunk %d has %q, want %q", i, got, words[i-1])
			}
			text.WriteString(*c.Choices[0].Delta.Content)
		}
	}
	if text.String() != want {
		t.Fatalf("streamed text %q, want %q", text.String(), want)
	}
	return res
}

// TestStoryStream: the story arrives a word per chunk, paced by the
// stream's timer (at least 30 ms between two words).
func TestStoryStream(t *testing.T) {
	start := time.Now()
	emits := stream(t, "demo-story", "tell me", story).Emits
	words := len(strings.SplitAfter(story, " "))
	if took, least := time.Since(start), time.Duration(words-1)*wordDelay; took < least {
		t.Fatalf("the story took %v, want at least %v for %d words", took, least, words)
	}
	// The chunks are shaped as they always were (encoding/json, keys
	// sorted), byte for byte.
	var c chunk
	_ = json.Unmarshal(emits[0].Data, &c)
	for i, want := range map[int]string{
		0:              `{"choices":[{"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":0}],"created":%d,"id":%q,"model":"demo-story","object":"chat.completion.chunk"}`,
		1:              `{"choices":[{"delta":{"content":"Once "},"finish_reason":null,"index":0}],"created":%d,"id":%q,"model":"demo-story","object":"chat.completion.chunk"}`,
		len(emits) - 2: `{"choices":[{"delta":{},"finish_reason":"stop","index":0}],"created":%d,"id":%q,"model":"demo-story","object":"chat.completion.chunk"}`,
		len(emits) - 1: `{"choices":[],"created":%d,"id":%q,"model":"demo-story","object":"chat.completion.chunk","usage":{"prompt_tokens":2,"completion_tokens":%d,"total_tokens":%d}}`,
	} {
		args := []any{c.Created, c.ID}
		if i == len(emits)-1 {
			n := len(strings.Fields(story))
			args = append(args, n, 2+n)
		}
		if w := fmt.Sprintf(want, args...); string(emits[i].Data) != w {
			t.Errorf("chunk %d\n got %s\nwant %s", i, emits[i].Data, w)
		}
	}
}

// TestEchoStream: demo-echo streams without pacing, a long answer over
// several callbacks.
func TestEchoStream(t *testing.T) {
	stream(t, "demo-echo", "hi there", "You said: hi there")
	long := strings.Repeat("word ", 3*wordsPerCallback)
	start := time.Now()
	res := stream(t, "demo-echo", long, "You said: "+long)
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("an unpaced answer took %v", took)
	}
	// 3*wordsPerCallback+2 words: the start, three timer callbacks, on_done.
	if res.Callbacks != 5 {
		t.Fatalf("%d callbacks, want 5", res.Callbacks)
	}
}

// TestEmbeddings: 8 numbers in [-1, 1) per input, the same for the same
// text in any request, a string input as one.
func TestEmbeddings(t *testing.T) {
	type answer struct {
		Object string `json:"object"`
		Model  string `json:"model"`
		Data   []struct {
			Object    string    `json:"object"`
			Index     int       `json:"index"`
			Embedding []float64 `json:"embedding"`
		} `json:"data"`
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
			TotalTokens  int `json:"total_tokens"`
		} `json:"usage"`
	}
	var a, again, one answer
	body(t, run(t, abi.OpEmbeddings, `{"model":"demo-embed","input":["a","b c"]}`), &a)
	body(t, run(t, abi.OpEmbeddings, `{"model":"demo-embed","input":["a","b c"]}`), &again)
	body(t, run(t, abi.OpEmbeddings, `{"model":"demo-embed","input":"b c"}`), &one)
	if a.Object != "list" || a.Model != "demo-embed" || len(a.Data) != 2 || a.Usage.PromptTokens != 3 || a.Usage.TotalTokens != 3 {
		t.Fatalf("answer %+v", a)
	}
	for i, d := range a.Data {
		if d.Object != "embedding" || d.Index != i || len(d.Embedding) != 8 {
			t.Fatalf("data %d %+v", i, d)
		}
		for _, x := range d.Embedding {
			if x < -1 || x >= 1 {
				t.Fatalf("data %d: %v out of range", i, d.Embedding)
			}
		}
	}
	if reflect.DeepEqual(a.Data[0].Embedding, a.Data[1].Embedding) {
		t.Fatalf("two texts, one vector %v", a.Data[0].Embedding)
	}
	if !reflect.DeepEqual(a, again) {
		t.Fatalf("not deterministic:\n%+v\n%+v", a, again)
	}
	if len(one.Data) != 1 || !reflect.DeepEqual(one.Data[0].Embedding, a.Data[1].Embedding) {
		t.Fatalf("a string input: %+v, want the vector of %v", one.Data, a.Data[1].Embedding)
	}
	res := run(t, abi.OpEmbeddings, `{"model":"demo-embed","input":3}`)
	if len(res.Emits) != 1 || res.Emits[0].Kind != "fail" || res.Emits[0].Status != 400 {
		t.Fatalf("a number input: emits %v", res.Emits)
	}
}

// TestModels lists the two demo models.
func TestModels(t *testing.T) {
	var l struct {
		Object string `json:"object"`
		Data   []struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			OwnedBy string `json:"owned_by"`
		} `json:"data"`
	}
	body(t, run(t, abi.OpModels, ``), &l)
	if l.Object != "list" || len(l.Data) != 2 || l.Data[0].ID != "demo-echo" || l.Data[1].ID != "demo-story" ||
		l.Data[0].Object != "model" || l.Data[1].OwnedBy != "llm-proxy" {
		t.Fatalf("models %+v", l)
	}
}

// TestAsEncodingJSON: the answers are byte for byte what encoding/json
// wrote when the demo used it: keys sorted, <, > and & escaped, \b and \f,
// U+2028 and U+2029 escaped, invalid UTF-8 read as U+FFFD.
func TestAsEncodingJSON(t *testing.T) {
	const tricky = `<b>a & b</b> \" \\ \/ \b\f\n\r\t \u0001\u007f x\u2028y\u2029z é 😀 \ud800 \ud83d\ude00` + "\xff"
	var text string
	if err := json.Unmarshal([]byte(`"`+tricky+`"`), &text); err != nil {
		t.Fatal(err)
	}
	marshal := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	const model = "<demo>&echo\u2028"
	req := `{"model":"<demo>&echo\u2028","messages":[{"role":"user","content":"` + tricky + `"}]}`
	reply := "You said: " + text
	prompt := len(strings.Fields(text))

	res := run(t, abi.OpChat, req)
	var c chunk
	body(t, res, &c)
	want := marshal(map[string]any{
		"id": c.ID, "object": "chat.completion", "created": c.Created, "model": model,
		"choices": []any{map[string]any{
			"index":         0,
			"message":       map[string]any{"role": "assistant", "content": reply},
			"finish_reason": "stop",
		}},
		"usage": newUsage(prompt, reply),
	})
	if got := string(res.Emits[0].Data); got != want {
		t.Errorf("chat\n got %s\nwant %s", got, want)
	}

	res = run(t, abi.OpChatStream, req)
	_ = json.Unmarshal(res.Emits[0].Data, &c)
	ch := func(delta map[string]any, finish any) string {
		return marshal(map[string]any{
			"id": c.ID, "object": "chat.completion.chunk", "created": c.Created, "model": model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		})
	}
	wants := []string{ch(map[string]any{"role": "assistant", "content": ""}, nil)}
	for _, w := range strings.SplitAfter(reply, " ") {
		wants = append(wants, ch(map[string]any{"content": w}, nil))
	}
	wants = append(wants, ch(map[string]any{}, "stop"), marshal(map[string]any{
		"id": c.ID, "object": "chat.completion.chunk", "created": c.Created, "model": model,
		"choices": []any{}, "usage": newUsage(prompt, reply),
	}))
	if len(res.Emits) != len(wants) {
		t.Fatalf("%d chunks, want %d", len(res.Emits), len(wants))
	}
	for i, e := range res.Emits {
		if string(e.Data) != wants[i] {
			t.Errorf("chunk %d\n got %s\nwant %s", i, e.Data, wants[i])
		}
	}

	inputs := []string{text, "", "a b", "<&>"}
	res = run(t, abi.OpEmbeddings, `{"model":"<e>","input":["`+tricky+`","",null,"a b","<&>"]}`)
	inputs = append(inputs[:2], append([]string{""}, inputs[2:]...)...) // null is ""
	data := make([]any, len(inputs))
	tokens := 0
	for i, in := range inputs {
		tokens += len(strings.Fields(in))
		vec := make([]float64, 8)
		for j := range vec {
			h := fnv.New32a()
			h.Write([]byte{byte(j)})
			h.Write([]byte(in))
			vec[j] = float64(h.Sum32()%2000)/1000 - 1
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": vec}
	}
	want = marshal(map[string]any{
		"object": "list", "data": data, "model": "<e>",
		"usage": map[string]int{"prompt_tokens": tokens, "total_tokens": tokens},
	})
	if len(res.Emits) != 1 || string(res.Emits[0].Data) != want {
		t.Errorf("embeddings\n got %v\nwant %s", res.Emits, want)
	}
}

// TestTypeErrors: a field of the wrong type is refused with the message
// encoding/json gave.
func TestTypeErrors(t *testing.T) {
	for _, tt := range []struct {
		op       abi.Op
		req, msg string
	}{
		{abi.OpChat, `[]`, "demo: json: cannot unmarshal array into Go value of type main.chatRequest"},
		{abi.OpChat, `{"model":5}`, "demo: json: cannot unmarshal number into Go struct field chatRequest.model of type string"},
		{abi.OpChatStream, `{"model":"x","Messages":{}}`, `demo: json: cannot unmarshal object into Go struct field chatRequest.messages of type []struct { Role string "json:\"role\""; Content json.RawMessage "json:\"content\"" }`},
		{abi.OpChat, `{"model":"x","messages":[{"role":"user"},"hi"]}`, `demo: json: cannot unmarshal string into Go struct field chatRequest.messages of type struct { Role string "json:\"role\""; Content json.RawMessage "json:\"content\"" }`},
		{abi.OpChat, `{"model":"x","messages":[{"role":true}]}`, "demo: json: cannot unmarshal bool into Go struct field .messages.role of type string"},
		{abi.OpEmbeddings, `"x"`, `demo: json: cannot unmarshal string into Go value of type struct { Model string "json:\"model\""; Input json.RawMessage "json:\"input\"" }`},
		{abi.OpEmbeddings, `{"input":"x","model":[]}`, "demo: json: cannot unmarshal array into Go struct field .model of type string"},
		{abi.OpEmbeddings, `{"model":"x","input":["a",1]}`, "demo: input must be a string or an array of strings"},
		{abi.OpEmbeddings, `{"model":"x"}`, "demo: input must be a string or an array of strings"},
	} {
		res := run(t, tt.op, tt.req)
		if len(res.Emits) != 1 || res.Emits[0].Kind != "fail" || res.Emits[0].Status != 400 || string(res.Emits[0].Data) != tt.msg {
			t.Errorf("%s %s: emits %v, want a 400 %s", tt.op, tt.req, res.Emits, tt.msg)
		}
	}
}
