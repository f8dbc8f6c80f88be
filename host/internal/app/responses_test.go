package app_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/tidwall/gjson"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
)

func responseInput(text string) responses.ResponseNewParamsInputUnion {
	return responses.ResponseNewParamsInputUnion{OfString: openai.String(text)}
}

var weatherFunction = []responses.ToolUnionParam{{OfFunction: &responses.FunctionToolParam{
	Name:       "get_weather",
	Parameters: map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
}}}

func functionOutput(callID, output string) responses.ResponseInputItemUnionParam {
	item := responses.ResponseInputItemParamOfFunctionCallOutput(output)
	item.OfFunctionCallOutput.CallID = openai.String(callID)
	return item
}

// responseHeaders keeps the response's headers.
func responseHeaders(h *http.Header) option.RequestOption {
	return option.WithMiddleware(func(r *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		resp, err := next(r)
		if resp != nil {
			*h = resp.Header
		}
		return resp, err
	})
}

// TestResponsesAPI drives /v1/responses with openai-go's Responses client
// through the openai, anthropic and gemini plugins.
func TestResponsesAPI(t *testing.T) {
	p := startEveryProvider(t)
	c := p.client(adminKey)
	ctx := context.Background()

	for _, w := range threeWays {
		t.Run(w.name, func(t *testing.T) {
			t.Run("chat", func(t *testing.T) {
				var head http.Header
				r, err := c.Responses.New(ctx, responses.ResponseNewParams{
					Model: w.model, Input: responseInput("hello there"), Instructions: openai.String("be brief"),
					MaxOutputTokens: openai.Int(100),
				}, responseHeaders(&head))
				if err != nil {
					t.Fatal(err)
				}
				if r.OutputText() != "echo: hello there" || r.Status != responses.ResponseStatusCompleted || r.Object != "response" ||
					r.Model != w.model || !strings.HasPrefix(r.ID, "resp_") || r.Usage.InputTokens < 1 || r.Usage.OutputTokens < 1 ||
					r.Usage.TotalTokens != r.Usage.InputTokens+r.Usage.OutputTokens || r.Instructions.OfString != "be brief" {
					t.Fatalf("response %s", r.RawJSON())
				}
				d := getLog(t, p, head.Get("X-Request-Id"))
				if d.API != "responses" || d.Status != 200 || d.PromptTokens != r.Usage.InputTokens {
					t.Fatalf("log row %+v", d)
				}
			})

			t.Run("stream", func(t *testing.T) {
				s := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: w.model, Input: responseInput("stream to me")})
				var types []string
				var text strings.Builder
				var done responses.Response
				seq := int64(-1)
				for s.Next() {
					ev := s.Current()
					types = append(types, ev.Type)
					if ev.SequenceNumber != seq+1 {
						t.Fatalf("sequence number %d after %d", ev.SequenceNumber, seq)
					}
					seq = ev.SequenceNumber
					switch ev.Type {
					case "response.output_text.delta":
						text.WriteString(ev.Delta)
					case "response.completed":
						done = ev.Response
					}
				}
				if err := s.Err(); err != nil {
					t.Fatal(err)
				}
				want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
				if len(types) < 9 || strings.Join(types[:4], " ") != strings.Join(want, " ") ||
					strings.Join(types[len(types)-4:], " ") != "response.output_text.done response.content_part.done response.output_item.done response.completed" {
					t.Fatalf("events %v", types)
				}
				if text.String() != "echo: stream to me" || done.OutputText() != "echo: stream to me" || done.Usage.OutputTokens < 1 {
					t.Fatalf("deltas %q, final %s", text.String(), done.RawJSON())
				}
			})

			t.Run("tools", func(t *testing.T) {
				params := responses.ResponseNewParams{Model: w.model, Tools: weatherFunction,
					Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
						responses.ResponseInputItemParamOfMessage("weather in Paris?", responses.EasyInputMessageRoleUser)}}}
				r, err := c.Responses.New(ctx, params)
				if err != nil {
					t.Fatal(err)
				}
				var call *responses.ResponseOutputItemUnion
				for i := range r.Output {
					if r.Output[i].Type == "function_call" {
						call = &r.Output[i]
					}
				}
				if call == nil || call.Name != "get_weather" || gjson.Get(call.Arguments.OfString, "city").Str != "Paris" || call.CallID == "" {
					t.Fatalf("function call %s", r.RawJSON())
				}
				params.Input.OfInputItemList = append(params.Input.OfInputItemList,
					responses.ResponseInputItemParamOfFunctionCall(call.Arguments.OfString, call.CallID, call.Name),
					functionOutput(call.CallID, "sunny, 21°C"))
				again, err := c.Responses.New(ctx, params)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(again.OutputText(), "tool said:") || !strings.Contains(again.OutputText(), "sunny, 21°C") {
					t.Fatalf("function output round trip %s", again.RawJSON())
				}
			})

			t.Run("streamed arguments", func(t *testing.T) {
				s := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: w.model, Tools: weatherFunction, Input: responseInput("weather in Paris?")})
				var args strings.Builder
				var done responses.Response
				for s.Next() {
					ev := s.Current()
					switch ev.Type {
					case "response.function_call_arguments.delta":
						args.WriteString(ev.Delta)
					case "response.completed":
						done = ev.Response
					}
				}
				if err := s.Err(); err != nil {
					t.Fatal(err)
				}
				last := done.Output[len(done.Output)-1]
				if gjson.Get(args.String(), "city").Str != "Paris" || last.Type != "function_call" || last.Arguments.OfString != args.String() {
					t.Fatalf("arguments %q, final %s", args.String(), done.RawJSON())
				}
			})

			t.Run("image", func(t *testing.T) {
				dataURL := "data:image/png;base64,iVBORw0KGgo="
				r, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: w.model,
					Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
						responses.ResponseInputItemParamOfMessage(responses.ResponseInputMessageContentListParam{
							{OfInputImage: &responses.ResponseInputImageParam{ImageURL: openai.String(dataURL), Detail: responses.ResponseInputImageDetailAuto}},
							responses.ResponseInputContentParamOfInputText("what is this?"),
						}, responses.EasyInputMessageRoleUser)}}})
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(r.OutputText(), "what is this?") {
					t.Fatalf("image response %s", r.RawJSON())
				}
				if up := lastUpstream(t, p); !strings.Contains(string(up.Body), "iVBORw0KGgo=") {
					t.Fatalf("the image did not reach the upstream: %s", up.Body)
				}
			})
		})
	}

	t.Run("json schema", func(t *testing.T) {
		_, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: "gpt-4o-mini", Input: responseInput("give me json"),
			Text: responses.ResponseTextConfigParam{Format: responses.ResponseFormatTextConfigParamOfJSONSchema("answer",
				map[string]any{"type": "object", "properties": map[string]any{"a": map[string]any{"type": "string"}}})}})
		if err != nil {
			t.Fatal(err)
		}
		up := lastUpstream(t, p)
		if f := gjson.GetBytes(up.Body, "response_format"); f.Get("type").Str != "json_schema" || f.Get("json_schema.name").Str != "answer" ||
			f.Get("json_schema.schema.properties.a.type").Str != "string" {
			t.Fatalf("response_format not mapped: %s", up.Body)
		}
	})
}

// TestResponsesErrors: errors reach the Responses client in OpenAI's
// shape with the right statuses; stored state is refused clearly.
func TestResponsesErrors(t *testing.T) {
	p := startEveryProvider(t)
	ctx := context.Background()
	expect := func(t *testing.T, err error, status int, typ string) *openai.Error {
		t.Helper()
		var ae *openai.Error
		if !errors.As(err, &ae) || ae.StatusCode != status || (typ != "" && ae.Type != typ) || ae.Message == "" {
			t.Fatalf("want %d %s, got %v", status, typ, err)
		}
		return ae
	}
	params := func(model string) responses.ResponseNewParams {
		return responses.ResponseNewParams{Model: model, Input: responseInput("hi")}
	}
	_, err := p.client("sk-wrong").Responses.New(ctx, params("gpt-4o-mini"))
	expect(t, err, 401, "authentication_error")
	c := p.client(adminKey)
	_, err = c.Responses.New(ctx, params("no-such-model"))
	expect(t, err, 404, "")
	r := params("gpt-4o-mini")
	r.PreviousResponseID = openai.String("resp_123")
	_, err = c.Responses.New(ctx, r)
	if ae := expect(t, err, 400, "invalid_request_error"); ae.Param != "previous_response_id" || ae.Code != "previous_response_not_found" {
		t.Fatalf("param %q code %q", ae.Param, ae.Code)
	}
	r = params("gpt-4o-mini")
	r.Tools = []responses.ToolUnionParam{responses.ToolParamOfFileSearch([]string{"vs_1"})}
	_, err = c.Responses.New(ctx, r)
	if ae := expect(t, err, 400, "invalid_request_error"); ae.Param != "tools[0].type" || ae.Code != "unsupported_content" {
		t.Fatalf("param %q code %q", ae.Param, ae.Code)
	}
	for _, m := range []string{"fail-429", "anthropic/fail-429"} {
		_, err = c.Responses.New(ctx, params(m))
		if ae := expect(t, err, 429, ""); ae.Response.Header.Get("Retry-After") == "" || ae.Type == "" {
			t.Fatalf("%s: no Retry-After", m)
		}
	}
	for _, m := range []string{"fail-500", "anthropic/fail-500"} {
		_, err = c.Responses.New(ctx, params(m))
		var ae *openai.Error
		if !errors.As(err, &ae) || ae.StatusCode < 500 {
			t.Fatalf("%s: %v", m, err)
		}
	}
	t.Run("error after the stream began", func(t *testing.T) {
		s := c.Responses.NewStreaming(ctx, params(fakeupstream.ModelStreamErrorMidway))
		var types []string
		for s.Next() {
			types = append(types, s.Current().Type)
		}
		if len(types) == 0 || types[len(types)-1] != "error" {
			t.Fatalf("events %v, err %v", types, s.Err())
		}
	})
}

// TestResponsesAbortAndConcurrency: a client that leaves is logged as
// 499; 20 streams at once all complete.
func TestResponsesAbortAndConcurrency(t *testing.T) {
	p := startEveryProvider(t)
	c := p.client(adminKey)
	t.Run("abort", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var head http.Header
		s := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: fakeupstream.ModelSlowStream, Input: responseInput("slowly")}, responseHeaders(&head))
		if !s.Next() {
			t.Fatal(s.Err())
		}
		cancel()
		for s.Next() {
		}
		if d := getLog(t, p, head.Get("X-Request-Id")); d.Status != 499 || d.API != "responses" {
			t.Fatalf("log row %+v", d)
		}
	})
	t.Run("20 streams", func(t *testing.T) {
		concurrently(t, 20, func(i int) error {
			model := threeWays[i%3].model
			s := c.Responses.NewStreaming(context.Background(), responses.ResponseNewParams{Model: model, Input: responseInput("together")})
			var done responses.Response
			for s.Next() {
				if ev := s.Current(); ev.Type == "response.completed" {
					done = ev.Response
				}
			}
			if err := s.Err(); err != nil {
				return err
			}
			if done.OutputText() != "echo: together" {
				return errors.New(model + ": " + done.RawJSON())
			}
			return nil
		})
	})
}

// upstreamTurns lists the roles and texts of the messages the fake
// upstream got last.
func upstreamTurns(t *testing.T, p *proxy) []string {
	t.Helper()
	var turns []string
	gjson.GetBytes(lastUpstream(t, p).Body, "messages").ForEach(func(_, m gjson.Result) bool {
		turns = append(turns, m.Get("role").Str+": "+m.Get("content").String())
		return true
	})
	return turns
}

// TestResponsesKept: a response is kept (store defaults to true) and a
// later request continues it with previous_response_id, after a restart
// too, streamed or not; only the key that made it can reach it; store:
// false keeps nothing; DELETE forgets it.
func TestResponsesKept(t *testing.T) {
	var cfg *config.Config
	p := startProxy(t, func(c *config.Config) { cfg = c })
	c := p.client(adminKey)
	ctx := context.Background()

	r1, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: "gpt-4o-mini", Input: responseInput("my name is Ada"), Instructions: openai.String("be kind")})
	if err != nil {
		t.Fatal(err)
	}
	if !gjson.Get(r1.RawJSON(), "store").Bool() {
		t.Fatalf("not kept: %s", r1.RawJSON())
	}
	got, err := c.Responses.Get(ctx, r1.ID, responses.ResponseGetParams{})
	if err != nil || got.ID != r1.ID || got.OutputText() != "echo: my name is Ada" {
		t.Fatalf("GET: %v %s", err, got.RawJSON())
	}
	// A streamed continuation is kept as well.
	s := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "gpt-4o-mini", Input: responseInput("what is my name?"),
		PreviousResponseID: openai.String(r1.ID)})
	var r2 responses.Response
	for s.Next() {
		if ev := s.Current(); ev.Type == "response.completed" {
			r2 = ev.Response
		}
	}
	if err := s.Err(); err != nil || r2.PreviousResponseID != r1.ID {
		t.Fatalf("%v %s", err, r2.RawJSON())
	}
	want := "user: my name is Ada|assistant: echo: my name is Ada|user: what is my name?"
	if turns := upstreamTurns(t, p); strings.Join(turns, "|") != want {
		t.Fatalf("upstream conversation %q, want %q (the first request's instructions are not carried over)", turns, want)
	}

	// Another proxy on the same database continues it.
	p.Stop()
	p2 := startOn(t, cfg, p.Upstream)
	c2 := p2.client(adminKey)
	r3, err := c2.Responses.New(ctx, responses.ResponseNewParams{Model: "gpt-4o-mini", Input: responseInput("and again?"),
		PreviousResponseID: openai.String(r2.ID)})
	if err != nil {
		t.Fatal(err)
	}
	want += "|assistant: echo: what is my name?|user: and again?"
	if turns := upstreamTurns(t, p2); strings.Join(turns, "|") != want || r3.PreviousResponseID != r2.ID {
		t.Fatalf("after a restart the upstream got %q, want %q", turns, want)
	}

	// Another key sees none of them.
	other := createKey(t, p2, `{"name":"other"}`)
	co := p2.client(other.Key)
	_, err = co.Responses.New(ctx, responses.ResponseNewParams{Model: "gpt-4o-mini", Input: responseInput("hi"), PreviousResponseID: openai.String(r3.ID)})
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Code != "previous_response_not_found" || ae.Param != "previous_response_id" {
		t.Fatalf("another key continued the response: %v", err)
	}
	if _, err = co.Responses.Get(ctx, r3.ID, responses.ResponseGetParams{}); !errors.As(err, &ae) || ae.StatusCode != 404 {
		t.Fatalf("another key read the response: %v", err)
	}
	if err := co.Responses.Delete(ctx, r3.ID); !errors.As(err, &ae) || ae.StatusCode != 404 {
		t.Fatalf("another key deleted the response: %v", err)
	}

	// store: false keeps nothing.
	r4, err := c2.Responses.New(ctx, responses.ResponseNewParams{Model: "gpt-4o-mini", Input: responseInput("forget me"), Store: openai.Bool(false)})
	if err != nil || gjson.Get(r4.RawJSON(), "store").Bool() {
		t.Fatalf("%v %s", err, r4.RawJSON())
	}
	if _, err = c2.Responses.Get(ctx, r4.ID, responses.ResponseGetParams{}); !errors.As(err, &ae) || ae.StatusCode != 404 {
		t.Fatalf("store:false was kept: %v", err)
	}

	// DELETE forgets.
	if err := c2.Responses.Delete(ctx, r3.ID); err != nil {
		t.Fatal(err)
	}
	if _, err = c2.Responses.Get(ctx, r3.ID, responses.ResponseGetParams{}); !errors.As(err, &ae) || ae.StatusCode != 404 || ae.Code != "response_not_found" {
		t.Fatalf("deleted response still there: %v", err)
	}
}

// TestResponsesNotKept: with [responses] store off nothing is kept and
// previous_response_id is refused with a 400 that says why.
func TestResponsesNotKept(t *testing.T) {
	p := startProxy(t, func(c *config.Config) { c.Responses.Store = false })
	c := p.client(adminKey)
	r, err := c.Responses.New(context.Background(), responses.ResponseNewParams{Model: "gpt-4o-mini", Input: responseInput("hi")})
	if err != nil || gjson.Get(r.RawJSON(), "store").Bool() {
		t.Fatalf("%v %s", err, r.RawJSON())
	}
	_, err = c.Responses.New(context.Background(), responses.ResponseNewParams{Model: "gpt-4o-mini", Input: responseInput("hi"), PreviousResponseID: openai.String(r.ID)})
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Param != "previous_response_id" || !strings.Contains(ae.Message, "store") {
		t.Fatalf("%v", err)
	}
}
