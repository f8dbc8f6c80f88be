package main

import (
	"strconv"
	"time"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// The response translation: a Message becomes a chat.completion.
//
//	Anthropic                              OpenAI
//	id, model                              id, model
//	text blocks (joined)                   choices[0].message.content
//	tool_use blocks                        message.tool_calls, input as the arguments string
//	thinking, redacted_thinking, server    dropped
//	  tool blocks
//	stop_reason                            finish_reason (finishReason)
//	usage                                  usage (usage.append)
//	the response's Date header             created

// outBuf, textBuf and callsBuf are scratch of the callback that translates
// a Message: the completion is emitted (and copied by the host) before it
// returns.
var outBuf = make([]byte, 0, 4<<10)

// buildCompletion translates a Message into a chat.completion.
func buildCompletion(msg rawjson.Value, created int64) ([]byte, error) {
	var id, model, content, stop, usageV rawjson.Value
	for m := msg.Members(); m.Next(); {
		switch string(m.Key()) {
		case "id":
			id = m.Value()
		case "model":
			model = m.Value()
		case "content":
			content = m.Value()
		case "stop_reason":
			stop = m.Value()
		case "usage":
			usageV = m.Value()
		}
	}
	if content.Kind() != rawjson.Array {
		return nil, &sdk.HTTPError{Status: 502, Message: "the upstream answered with a body that is not a Messages API message"}
	}
	text, calls := textBuf[:0], callsBuf[:0]
	hasText, n := false, 0
	for e := content.Elements(); e.Next(); {
		var typ, t, bid, name, input rawjson.Value
		for m := e.Value().Members(); m.Next(); {
			switch string(m.Key()) {
			case "type":
				typ = m.Value()
			case "text":
				t = m.Value()
			case "id":
				bid = m.Value()
			case "name":
				name = m.Value()
			case "input":
				input = m.Value()
			}
		}
		switch {
		case typ.StringIs("text") && t.Kind() == rawjson.String:
			// Joining the contents of two string literals keeps their
			// escapes valid: no decoding needed.
			raw := t.Raw()
			text = append(text, raw[1:len(raw)-1]...)
			hasText = true
		case typ.StringIs("tool_use"):
			if bid.Kind() != rawjson.String || name.Kind() != rawjson.String {
				return nil, &sdk.HTTPError{Status: 502, Message: "the upstream answered with a tool call without id or name"}
			}
			if n > 0 {
				calls = append(calls, ',')
			}
			calls = appendToolCall(calls, bid.Raw(), name.Raw(), input.Raw())
			n++
		}
	}
	textBuf, callsBuf = text[:0], calls[:0]
	var u usage
	u.read(usageV)

	b := append(outBuf[:0], `{"id":`...)
	b = appendChatID(b, id)
	b = append(b, `,"object":"chat.completion","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":`...)
	b = appendStringOr(b, model, "")
	b = append(b, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)
	switch {
	case hasText:
		b = append(b, '"')
		b = append(b, text...)
		b = append(b, '"')
	case n > 0:
		b = append(b, "null"...)
	default:
		b = append(b, `""`...)
	}
	b = append(b, `,"refusal":null`...)
	if n > 0 {
		b = append(b, `,"tool_calls":[`...)
		b = append(b, calls...)
		b = append(b, ']')
	}
	b = append(b, `},"logprobs":null,"finish_reason":"`...)
	b = append(b, finishReason(stop)...)
	b = append(b, `"}],"usage":`...)
	b = u.append(b)
	b = append(b, '}')
	outBuf = b[:0]
	return b, nil
}

var textBuf, callsBuf []byte

// appendToolCall writes one OpenAI tool call; the tool's input object
// becomes the arguments string.
func appendToolCall(b, id, name, input []byte) []byte {
	b = append(b, `{"id":`...)
	b = append(b, id...)
	b = append(b, `,"type":"function","function":{"name":`...)
	b = append(b, name...)
	b = append(b, `,"arguments":`...)
	if len(input) == 0 || string(input) == "null" {
		input = []byte("{}")
	}
	b = rawjson.AppendString(b, input)
	return append(b, "}}"...)
}

// appendChatID writes a completion id as OpenAI's look: "chatcmpl-" and
// the message's id, so an answer does not tell clients which provider
// served it (the message id stays in it for tracing).
func appendChatID(b []byte, id rawjson.Value) []byte {
	if id.Kind() == rawjson.String && !id.Escaped() {
		b = append(b, `"chatcmpl-`...)
		return append(b, id.Raw()[1:]...)
	}
	return append(b, `"chatcmpl-anthropic"`...)
}

func appendStringOr(b []byte, v rawjson.Value, fallback string) []byte {
	if v.Kind() == rawjson.String {
		return append(b, v.Raw()...)
	}
	return rawjson.AppendString(b, fallback)
}

// finishReason maps a stop_reason:
//
//	end_turn, stop_sequence, pause_turn   stop
//	max_tokens, model_context_window_exceeded   length
//	tool_use                              tool_calls
//	refusal                               content_filter
//
// Anything else (null, a reason added later) is stop.
func finishReason(stop rawjson.Value) string {
	s, _ := stop.Str()
	switch string(s) {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	}
	return "stop"
}

// usage is Anthropic's token accounting. input_tokens does not include the
// tokens read from or written to the prompt cache; OpenAI's prompt_tokens
// does, with the cache reads repeated as prompt_tokens_details.cached_tokens.
// So every prompt token is counted once in prompt_tokens, and once more
// only as the cached part of it.
type usage struct {
	input, output, cacheRead, cacheWrite int64
}

// read takes the counts present in an Anthropic usage object. A stream
// reports usage in message_start and again, cumulatively, in message_delta:
// each report replaces the counts it carries, none is added to another.
func (u *usage) read(v rawjson.Value) {
	for m := v.Members(); m.Next(); {
		n, ok := m.Value().Int()
		if !ok {
			continue
		}
		switch string(m.Key()) {
		case "input_tokens":
			u.input = n
		case "output_tokens":
			u.output = n
		case "cache_read_input_tokens":
			u.cacheRead = n
		case "cache_creation_input_tokens":
			u.cacheWrite = n
		}
	}
}

func (u *usage) append(b []byte) []byte {
	prompt := u.input + u.cacheRead + u.cacheWrite
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, prompt, 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, u.output, 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, prompt+u.output, 10)
	b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
	b = strconv.AppendInt(b, u.cacheRead, 10)
	return append(b, "}}"...)
}

// buildModelList translates GET /v1/models ({"data":[{"id","created_at",
// "display_name","type"}],...}) into an OpenAI model list.
func buildModelList(list rawjson.Value) ([]byte, error) {
	b := []byte(`{"object":"list","data":[`)
	n := 0
	for e := list.Get("data").Elements(); e.Next(); n++ {
		m := e.Value()
		id := m.Get("id")
		if id.Kind() != rawjson.String {
			return nil, &sdk.HTTPError{Status: 502, Message: "the upstream answered with a malformed model list"}
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = append(b, id.Raw()...)
		b = append(b, `,"object":"model","created":`...)
		var t int64
		if s, ok := m.Get("created_at").Str(); ok {
			if tm, err := time.Parse(time.RFC3339, string(s)); err == nil {
				t = tm.Unix()
			}
		}
		b = strconv.AppendInt(b, t, 10)
		b = append(b, `,"owned_by":"anthropic"}`...)
	}
	return append(b, "]}"...), nil
}
