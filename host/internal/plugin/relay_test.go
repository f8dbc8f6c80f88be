package plugin_test

import (
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// TestRelayedAnswerMustBeJSON: the openai plugin relays a non-streamed
// answer as it is, but a success whose body is not JSON (here an event
// stream, as an upstream that read "streAm":true as "stream" would send)
// ends the stream with ErrUpstreamNotJSON instead of reaching the client
// as a JSON answer.
func TestRelayedAnswerMustBeJSON(t *testing.T) {
	v := load(t, "plugins/openai", plugin.Limits{})
	for answer, want := range map[string]error{
		"data: {\"choices\":[]}\n\ndata: [DONE]\n\n": plugin.ErrUpstreamNotJSON,
		"<html>gateway</html>":                       plugin.ErrUpstreamNotJSON,
		"":                                           plugin.ErrUpstreamNotJSON,
		" \n{\"choices\":[]}":                        nil,
	} {
		rec := newRecorder()
		eg := &imageEgress{answer: []byte(answer)}
		if _, err := v.Open(plugin.Invocation{Op: abi.OpChat, Request: []byte(`{"model":"m","streAm":true,"messages":[]}`),
			Config: guestConfig("https://api.example/v1"), Egress: eg, Sink: rec}); err != nil {
			t.Fatal(err)
		}
		if err := rec.wait(t); err != want {
			t.Errorf("answer %q: stream ended with %v, want %v", answer, err, want)
		}
	}
}
