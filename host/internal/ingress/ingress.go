// Package ingress translates the APIs clients speak besides OpenAI's chat
// completions, Anthropic's Messages API and OpenAI's Responses API, into
// the unified request (a chat completion request, sdk/ABI.md) and the
// answers back: whole ones, and streams chunk by chunk.
//
// It is ingress, not a provider: routing, keys, limits, logging and cost
// see one request shape whatever the client spoke. The translation works
// on raw JSON: requests and chunks are read with gjson, and output is
// appended byte by byte, with strings copied as they came (escaped JSON
// stays valid JSON), so a request costs a few microseconds and a streamed
// event well under one.
package ingress

import (
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
	"github.com/llm-proxy/llm-proxy/sdk/sse"
)

// BadRequest is a request that cannot be translated; Param names the
// field at fault, as the client wrote it.
type BadRequest struct {
	Param, Message string
	// Unsupported: the request is valid, but holds what the proxy cannot
	// send to the provider (a built-in tool, a file by id ...).
	Unsupported bool
}

func (e *BadRequest) Error() string { return e.Param + ": " + e.Message }

func bad(param, msg string) *BadRequest { return &BadRequest{Param: param, Message: msg} }

func unsupported(param, msg string) *BadRequest {
	return &BadRequest{Param: param, Message: msg, Unsupported: true}
}

// Usage is what a translated answer counted, in the unified (OpenAI) sense:
// Prompt includes the Cached tokens.
type Usage struct {
	Prompt, Completion, Cached, Reasoning int64
	Known                                 bool
}

// ChatUsage reads a chat completion "usage" object; Known is false when
// raw is not an object.
func ChatUsage(raw []byte) Usage {
	u := gjson.ParseBytes(raw)
	if !u.IsObject() {
		return Usage{}
	}
	return readChatUsage(u)
}

// readChatUsage reads a chat completion "usage" object.
func readChatUsage(u gjson.Result) Usage {
	return Usage{
		Prompt:     u.Get("prompt_tokens").Int(),
		Completion: u.Get("completion_tokens").Int(),
		Cached:     u.Get("prompt_tokens_details.cached_tokens").Int(),
		Reasoning:  u.Get("completion_tokens_details.reasoning_tokens").Int(),
		Known:      true,
	}
}

// inner is a JSON string's escaped content, without its quotes: the
// contents of several strings joined are again a valid string's content.
func inner(raw string) string {
	if len(raw) >= 2 && raw[0] == '"' {
		return raw[1 : len(raw)-1]
	}
	return ""
}

func appendStr(b []byte, s string) []byte { return rawjson.AppendString(b, s) }

func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }

// appendRawOr copies v as it came, or def when v is absent or null.
func appendRawOr(b []byte, v gjson.Result, def string) []byte {
	if !v.Exists() || v.Type == gjson.Null {
		return append(b, def...)
	}
	return append(b, v.Raw...)
}

// sseEvent appends a named Server-Sent Event holding data; line breaks in
// data (a relayed event may hold some) become data lines of the same
// event, so no data can end the event early or forge another.
func sseEvent(b []byte, name string, data []byte) []byte {
	b = append(b, "event: "...)
	b = append(b, name...)
	b = append(b, '\n')
	return sse.AppendData(b, data)
}

// isString reports a JSON string value.
func isString(v gjson.Result) bool { return v.Type == gjson.String }

// isNumber reports a JSON number value.
func isNumber(v gjson.Result) bool { return v.Type == gjson.Number }

// index is an array element's position, from the key gjson's ForEach
// gives it.
func index(k gjson.Result) string { return strconv.Itoa(int(k.Num)) }

// members are an object's members, read in one pass, so that finding one
// does not scan the object again (gjson's Get does).
type members []member

type member struct {
	key string
	val gjson.Result
}

func readMembers(obj gjson.Result) members {
	m := make(members, 0, 16)
	obj.ForEach(func(k, v gjson.Result) bool {
		m = append(m, member{k.Str, v})
		return true
	})
	return m
}

// get is the first member named key; absent (Exists false) if none.
func (m members) get(key string) gjson.Result {
	for i := range m {
		if m[i].key == key {
			return m[i].val
		}
	}
	return gjson.Result{}
}

// nonEmptyArray reports an array with at least one element, without
// making a slice of them.
func nonEmptyArray(v gjson.Result) bool {
	if !v.IsArray() {
		return false
	}
	n := false
	v.ForEach(func(_, _ gjson.Result) bool { n = true; return false })
	return n
}
