package fakeupstream

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func gemini(t *testing.T, s *Server, method, body string) (*http.Response, []byte) {
	t.Helper()
	return do(t, http.MethodPost, strings.TrimSuffix(s.URL, "/v1")+"/v1beta/models/"+method, body, map[string]string{"x-goog-api-key": "gk"})
}

func TestGeminiGenerate(t *testing.T) {
	s := startServer(t, Options{APIKey: "gk"})
	resp, b := gemini(t, s, "gemini-x:generateContent", `{"contents":[{"role":"user","parts":[{"text":"hello there"},{"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgo="}}]}],"systemInstruction":{"parts":[{"text":"be brief"}]},"generationConfig":{"temperature":0.2}}`)
	var r struct {
		Candidates []struct {
			Content struct {
				Parts []geminiPart
			}
			FinishReason string
		}
		UsageMetadata struct{ PromptTokenCount, CandidatesTokenCount int }
	}
	if err := json.Unmarshal(b, &r); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if got := *r.Candidates[0].Content.Parts[0].Text; got != "echo: hello there [image/png 8 bytes]" || r.Candidates[0].FinishReason != "STOP" {
		t.Fatalf("%s", b)
	}
	tools := `"tools":[{"functionDeclarations":[{"name":"get_weather","parameters":{"type":"OBJECT","properties":{"city":{"type":"STRING"}}}}]}]`
	_, b = gemini(t, s, "gemini-x:generateContent", `{"contents":[{"role":"user","parts":[{"text":"weather?"}]}],`+tools+`}`)
	if !strings.Contains(string(b), `"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"`+geminiSignature+`"`) {
		t.Fatalf("no function call: %s", b)
	}
	turn := `{"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"` + geminiSignature + `"}]},{"role":"user","parts":[{"functionResponse":{"name":"get_weather","response":{"temp":21}}}]}`
	_, b = gemini(t, s, "gemini-x:generateContent", `{"contents":[{"role":"user","parts":[{"text":"weather?"}]},`+turn+`],`+tools+`}`)
	if !strings.Contains(string(b), `tool said: {\"temp\":21}`) {
		t.Fatalf("after the response: %s", b)
	}
}

func TestGeminiRefusals(t *testing.T) {
	s := startServer(t, Options{APIKey: "gk"})
	for name, body := range map[string]string{
		"unknown field":          `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"temperature":1}`,
		"bad role":               `{"contents":[{"role":"assistant","parts":[{"text":"x"}]}]}`,
		"additionalProperties":   `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"OBJECT","additionalProperties":false}}]}]}`,
		"schema keyword deep":    `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"generationConfig":{"responseSchema":{"type":"OBJECT","properties":{"a":{"$ref":"#/x"}}}}}`,
		"missing signature":      `{"contents":[{"role":"user","parts":[{"text":"x"}]},{"role":"model","parts":[{"functionCall":{"name":"f","args":{}}}]},{"role":"user","parts":[{"functionResponse":{"name":"f","response":{}}}]}]}`,
		"responses do not match": `{"contents":[{"role":"user","parts":[{"text":"x"}]},{"role":"model","parts":[{"functionCall":{"name":"f","args":{}},"thoughtSignature":"skip_thought_signature_validator"}]},{"role":"user","parts":[{"functionResponse":{"name":"f","response":{}}},{"functionResponse":{"name":"f","response":{}}}]}]}`,
		"two kinds in a part":    `{"contents":[{"role":"user","parts":[{"text":"x","inlineData":{"mimeType":"image/png","data":"AA=="}}]}]}`,
	} {
		resp, b := gemini(t, s, "gemini-x:generateContent", body)
		if resp.StatusCode != 400 || !strings.Contains(string(b), `"status":"INVALID_ARGUMENT"`) {
			t.Errorf("%s: %d %s", name, resp.StatusCode, b)
		}
	}
	resp, _ := do(t, http.MethodPost, strings.TrimSuffix(s.URL, "/v1")+"/v1beta/models/m:generateContent", `{}`, map[string]string{"x-goog-api-key": "wrong"})
	if resp.StatusCode != 400 {
		t.Fatalf("wrong key: %d", resp.StatusCode)
	}
	for model, status := range map[string]int{ModelFail400: 400, ModelFail401: 401, ModelFail429: 429, ModelFail500: 500, ModelFail503: 503} {
		if resp, b := gemini(t, s, model+":generateContent", `{}`); resp.StatusCode != status || !strings.Contains(string(b), `"code":`) {
			t.Errorf("%s: %d %s", model, resp.StatusCode, b)
		}
	}
}

func TestGeminiStream(t *testing.T) {
	s := startServer(t, Options{Chunks: 3})
	_, b := gemini(t, s, "gemini-x:streamGenerateContent?alt=sse", `{"contents":[{"role":"user","parts":[{"text":"one two three"}]}]}`)
	events := strings.Split(strings.TrimSpace(string(b)), "\n\n")
	var text strings.Builder
	for i, ev := range events {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || !json.Valid([]byte(data)) {
			t.Fatalf("event %q", ev)
		}
		var r struct {
			Candidates []struct {
				Content      struct{ Parts []geminiPart }
				FinishReason string
			}
		}
		json.Unmarshal([]byte(data), &r)
		text.WriteString(*r.Candidates[0].Content.Parts[0].Text)
		if (r.Candidates[0].FinishReason == "STOP") != (i == len(events)-1) {
			t.Fatalf("finishReason on event %d of %d", i, len(events))
		}
	}
	if len(events) != 3 || text.String() != "echo: one two three" || strings.Contains(string(b), "[DONE]") {
		t.Fatalf("%d events, text %q", len(events), text.String())
	}
	_, b = gemini(t, s, ModelBlocked+":streamGenerateContent?alt=sse", `{"contents":[{"role":"user","parts":[{"text":"x"}]}]}`)
	if !strings.Contains(string(b), `"blockReason":"SAFETY"`) {
		t.Fatalf("%s", b)
	}
}

func TestGeminiEmbedAndModels(t *testing.T) {
	s := startServer(t, Options{})
	_, b := gemini(t, s, "emb:batchEmbedContents", `{"requests":[{"model":"models/emb","content":{"parts":[{"text":"a"}]},"outputDimensionality":3},{"model":"models/emb","content":{"parts":[{"text":"b"}]}}]}`)
	var r struct{ Embeddings []struct{ Values []float32 } }
	if err := json.Unmarshal(b, &r); err != nil || len(r.Embeddings) != 2 || len(r.Embeddings[0].Values) != 3 || len(r.Embeddings[1].Values) != DefaultEmbeddingDimensions {
		t.Fatalf("%s", b)
	}
	if r.Embeddings[0].Values[0] != Embedding("a", 3)[0] {
		t.Fatal("values differ from Embedding")
	}
	resp, b := do(t, http.MethodGet, strings.TrimSuffix(s.URL, "/v1")+"/v1beta/models", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "models/gemini-fake-1") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}
