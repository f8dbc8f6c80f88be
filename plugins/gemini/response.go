package main

import (
	"strconv"

	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// The response translation: a GenerateContentResponse becomes a
// chat.completion.
//
//	Gemini                              OpenAI
//	responseId, modelVersion            id, model (the requested model without them)
//	candidates[i] (index i)             choices[i]
//	text parts (joined)                 message.content
//	thought parts (thought: true)       dropped
//	functionCall parts                  message.tool_calls, ids made by callID
//	finishReason                        finish_reason (finishReason below)
//	promptFeedback.blockReason,         one choice: content "", refusal naming the
//	  no candidates                       reason, finish_reason content_filter
//	usageMetadata                       usage (usage.append)
//	the response's Date header          created

// outBuf holds a body being built (a completion, an embeddings list); it is
// scratch of one callback, emitted before the callback returns.
var outBuf = make([]byte, 0, 4<<10)

// usage is Gemini's usageMetadata. Each report replaces the previous one:
// a stream repeats the running totals, never increments.
type usage struct {
	prompt, candidates, thoughts, toolPrompt, cached, total int64
	seen                                                    bool
}

func (u *usage) read(v rawjson.Value) {
	if v.Kind() != rawjson.Object {
		return
	}
	*u = usage{seen: true}
	for m := v.Members(); m.Next(); {
		n, ok := m.Value().Int()
		if !ok {
			continue
		}
		switch string(m.Key()) {
		case "promptTokenCount":
			u.prompt = n
		case "candidatesTokenCount":
			u.candidates = n
		case "thoughtsTokenCount":
			u.thoughts = n
		case "toolUsePromptTokenCount":
			u.toolPrompt = n
		case "cachedContentTokenCount":
			u.cached = n
		case "totalTokenCount":
			u.total = n
		}
	}
}

// append writes the OpenAI usage object. prompt_tokens is the prompt and
// tool-use prompt tokens (the cached ones are part of the prompt count and
// repeated as cached_tokens); completion_tokens the candidates' and the
// thinking tokens, both billed as output, with the thinking ones repeated
// as reasoning_tokens.
func (u *usage) append(b []byte) []byte {
	prompt := u.prompt + u.toolPrompt
	completion := u.candidates + u.thoughts
	total := u.total
	if total == 0 {
		total = prompt + completion
	}
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, prompt, 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, completion, 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, total, 10)
	b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
	b = strconv.AppendInt(b, u.cached, 10)
	b = append(b, `},"completion_tokens_details":{"reasoning_tokens":`...)
	b = strconv.AppendInt(b, u.thoughts, 10)
	return append(b, "}}"...)
}

// finishReason maps a candidate's finishReason; calls says whether the
// candidate called a function.
//
//	STOP                                 stop, or tool_calls after a function call
//	MAX_TOKENS                           length
//	SAFETY, RECITATION, BLOCKLIST,       content_filter
//	  PROHIBITED_CONTENT, SPII,
//	  IMAGE_SAFETY, IMAGE_PROHIBITED_CONTENT
//	anything else (OTHER, LANGUAGE,      stop, or tool_calls after a function call
//	  MALFORMED_FUNCTION_CALL, ...)
func finishReason(r []byte, calls bool) string {
	switch string(r) {
	case "MAX_TOKENS":
		return "length"
	case "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT":
		return "content_filter"
	}
	if calls {
		return "tool_calls"
	}
	return "stop"
}

// callID is a tool call's id: "call_" and 16 hex digits of a hash of the
// response id, the call's index and its name, so a streamed and a whole
// answer give the same ids and a client can tell calls apart.
// Gemini's thought signature, which must come back with the function call
// on the next request, is kept in the id after "_ts_": the id is the one
// field of a tool call every OpenAI client sends back unchanged.
func callID(b, responseID []byte, index int, name, sig []byte) []byte {
	h := uint64(14695981039346656037)
	mix := func(p []byte) {
		for _, c := range p {
			h ^= uint64(c)
			h *= 1099511628211
		}
		h ^= 0xff
		h *= 1099511628211
	}
	mix(responseID)
	mix(strconv.AppendInt(make([]byte, 0, 8), int64(index), 10))
	mix(name)
	b = append(b, "call_"...)
	const hex = "0123456789abcdef"
	for s := 60; s >= 0; s -= 4 {
		b = append(b, hex[(h>>uint(s))&0xf])
	}
	if len(sig) > 0 {
		b = append(b, "_ts_"...)
		b = append(b, sig...)
	}
	return b
}

// signatureOf returns the thought signature a tool call id carries, and
// whether the id was made by callID at all.
func signatureOf(id []byte) (sig []byte, ours bool) {
	if len(id) < 21 || string(id[:5]) != "call_" || !isHex(id[5:21]) {
		return nil, false
	}
	if len(id) == 21 {
		return nil, true
	}
	if len(id) > 25 && string(id[21:25]) == "_ts_" {
		return id[25:], true
	}
	return nil, false
}

func isHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// candidateParts reads a candidate's parts: the text (joined raw string
// contents), the tool calls (written by writeCall) and whether there was any
// text at all.
type partsReader struct {
	text  []byte
	calls []byte
	n     int // tool calls
	any   bool
}

// readPart returns the members of a response part that the translation
// uses: its text, its functionCall, the call's thoughtSignature, and
// whether it is thought text (which is dropped).
func readPart(p rawjson.Value) (text, call, sig rawjson.Value, thought bool) {
	for m := p.Members(); m.Next(); {
		switch string(m.Key()) {
		case "text":
			text = m.Value()
		case "functionCall":
			call = m.Value()
		case "thoughtSignature":
			sig = m.Value()
		case "thought":
			thought = m.Value().IsTrue()
		}
	}
	return text, call, sig, thought
}

// read walks parts; responseID and base (the index of the first call)
// seed callID.
func (r *partsReader) read(parts rawjson.Value, responseID []byte, base int) error {
	for e := parts.Elements(); e.Next(); {
		text, call, sig, thought := readPart(e.Value())
		switch {
		case thought:
		case text.Kind() == rawjson.String:
			raw := text.Raw()
			r.text = append(r.text, raw[1:len(raw)-1]...)
			r.any = true
		case call.Kind() == rawjson.Object:
			name := call.Get("name")
			if name.Kind() != rawjson.String {
				return errUpstreamBody
			}
			args := call.Get("args").Raw()
			if len(args) == 0 {
				args = []byte("{}")
			}
			s, _ := sig.Str()
			if r.n > 0 {
				r.calls = append(r.calls, ',')
			}
			r.calls = writeCall(r.calls, responseID, base+r.n, name.Raw(), args, s, -1)
			r.n++
		}
	}
	return nil
}

// writeCall writes one OpenAI tool call (index >= 0 adds the "index" of a
// streamed delta).
func writeCall(b, responseID []byte, n int, name, args, sig []byte, index int) []byte {
	b = append(b, '{')
	if index >= 0 {
		b = append(b, `"index":`...)
		b = strconv.AppendInt(b, int64(index), 10)
		b = append(b, ',')
	}
	b = append(b, `"id":"`...)
	b = callID(b, responseID, n, name[1:len(name)-1], sig)
	b = append(b, `","type":"function","function":{"name":`...)
	b = append(b, name...)
	b = append(b, `,"arguments":`...)
	b = rawjson.AppendString(b, args)
	return append(b, "}}"...)
}

// blockedRefusal is the refusal text of a blocked prompt.
func blockedRefusal(b []byte, reason []byte) []byte {
	return rawjson.AppendString(b, "The prompt was blocked by the provider's content filter ("+string(reason)+").")
}

// buildCompletion translates a GenerateContentResponse.
func buildCompletion(resp rawjson.Value, created int64, reqModel []byte) ([]byte, error) {
	var candidates, feedback, usageV, responseID, modelVersion rawjson.Value
	for m := resp.Members(); m.Next(); {
		switch string(m.Key()) {
		case "candidates":
			candidates = m.Value()
		case "promptFeedback":
			feedback = m.Value()
		case "usageMetadata":
			usageV = m.Value()
		case "responseId":
			responseID = m.Value()
		case "modelVersion":
			modelVersion = m.Value()
		}
	}
	rid, _ := responseID.Str()
	b := append(outBuf[:0], `{"id":`...)
	b = appendID(b, responseID)
	b = append(b, `,"object":"chat.completion","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":`...)
	if modelVersion.Kind() == rawjson.String {
		b = append(b, modelVersion.Raw()...)
	} else {
		b = append(b, reqModel...)
	}
	b = append(b, `,"choices":[`...)
	if candidates.Len() == 0 {
		// No answer: a blocked prompt, or an empty one. A client gets a
		// normal completion, never an error status.
		b = append(b, `{"index":0,"message":{"role":"assistant","content":"","refusal":`...)
		reason, blocked := feedback.Get("blockReason").Str()
		if blocked {
			b = blockedRefusal(b, reason)
			b = append(b, `},"logprobs":null,"finish_reason":"content_filter"}`...)
		} else {
			b = append(b, `null},"logprobs":null,"finish_reason":"stop"}`...)
		}
	}
	i := 0
	for e := candidates.Elements(); e.Next(); i++ {
		c := e.Value()
		index := int64(i)
		if n, ok := c.Get("index").Int(); ok {
			index = n
		}
		var pr partsReader
		pr.text, pr.calls = textBuf[:0], callsBuf[:0]
		if err := pr.read(c.Get("content").Get("parts"), rid, int(index)*1000); err != nil {
			return nil, err
		}
		textBuf, callsBuf = pr.text[:0], pr.calls[:0]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, index, 10)
		b = append(b, `,"message":{"role":"assistant","content":`...)
		switch {
		case pr.any:
			b = append(b, '"')
			b = append(b, pr.text...)
			b = append(b, '"')
		case pr.n > 0:
			b = append(b, "null"...)
		default:
			b = append(b, `""`...)
		}
		b = append(b, `,"refusal":null`...)
		if pr.n > 0 {
			b = append(b, `,"tool_calls":[`...)
			b = append(b, pr.calls...)
			b = append(b, ']')
		}
		fr, _ := c.Get("finishReason").Str()
		b = append(b, `},"logprobs":null,"finish_reason":"`...)
		b = append(b, finishReason(fr, pr.n > 0)...)
		b = append(b, `"}`...)
	}
	var u usage
	u.read(usageV)
	b = append(b, `],"usage":`...)
	b = u.append(b)
	b = append(b, '}')
	outBuf = b[:0]
	return b, nil
}

// textBuf and callsBuf are scratch for a candidate's text and tool calls.
var textBuf, callsBuf []byte

// appendID writes the completion id: "chatcmpl-" and the response id, or
// a fixed one without it.
func appendID(b []byte, responseID rawjson.Value) []byte {
	if responseID.Kind() == rawjson.String && !responseID.Escaped() {
		raw := responseID.Raw()
		b = append(b, `"chatcmpl-`...)
		b = append(b, raw[1:]...)
		return b
	}
	return append(b, `"chatcmpl-gemini"`...)
}
