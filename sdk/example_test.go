package sdk_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/plugintest"
)

// shouter is a tiny plugin: it streams its upstream's events upper-cased,
// counts them, and offers nothing else.
type shouter struct{ sdk.Unimplemented }

func (shouter) ChatStream(s *sdk.Stream) error {
	cfg, err := s.Config()
	if err != nil {
		return err
	}
	n := 0 // this stream's state, kept by the Handler's functions
	return s.Send(sdk.Request{Method: "POST", URL: cfg.BaseURL + "/chat", Body: s.Request()}, sdk.Handler{
		Event: func(s *sdk.Stream, data []byte) error {
			n++
			return s.EmitChunk(bytes.ToUpper(data))
		},
		End: func(s *sdk.Stream) error {
			if err := s.EmitUsage([]byte(fmt.Sprintf(`{"completion_tokens":%d}`, n))); err != nil {
				return err
			}
			return s.Finish()
		},
	})
}

func Example_plugintest() {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"content\":\"hello\"}\n\ndata: {\"content\":\"world\"}\n\ndata: [DONE]\n\n")
	}))
	defer upstream.Close()

	request := []byte(`{"model":"tiny","messages":[{"role":"user","content":"hi"}],"stream":true}`)
	opts := plugintest.Options{Provider: "demo", BaseURL: upstream.URL + "/v1"}
	for _, op := range []abi.Op{abi.OpChatStream, abi.OpEmbeddings} {
		res := plugintest.Run(shouter{}, op, request, opts)
		fmt.Printf("%s (finished %v)\n", op, res.Finished)
		for _, e := range res.Emits {
			fmt.Println(e)
		}
	}
	// Output:
	// chat_stream (finished true)
	// chunk {"CONTENT":"HELLO"}
	// chunk {"CONTENT":"WORLD"}
	// usage {"completion_tokens":2}
	// embeddings (finished false)
	// fail 400 operation not supported by this provider
}
