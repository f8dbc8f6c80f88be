package main

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"unsafe"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/chatreq"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// Embeddings: an OpenAI embeddings request becomes one batchEmbedContents
// request (one entry per input string; a single string is a batch of one):
//
//	OpenAI                   Gemini
//	input (string or list)   requests[].content.parts[0].text
//	dimensions               requests[].outputDimensionality
//	data[i].embedding        embeddings[i].values, or, with encoding_format
//	                         base64, the values as little-endian float32
//
// Token arrays as input are refused (400): Gemini embeds text. Gemini
// reports no token counts for embeddings, so usage is 0.
func (plugin) Embeddings(s *sdk.Stream) error {
	cfg, err := s.Config()
	if err != nil {
		return err
	}
	reqDoc, err = s.ParseJSON(s.Request(), reqDoc.Tape)
	if err != nil {
		return chatreq.BadRequest("", "the request body is not valid JSON")
	}
	req := reqDoc.Root()
	model, ok := req.Get("model").Str()
	if !ok || len(model) == 0 {
		return chatreq.BadRequest("model", "model must be a string")
	}
	if err := checkModel(model); err != nil {
		return err
	}
	input := req.Get("input")
	dims := req.Get("dimensions")
	b64 := req.Get("encoding_format").StringIs("base64")
	prefix := modelURL("", model, "")[1:] // "models/{model}"

	body := append(reqBuf[:0], `{"requests":[`...)
	add := func(text rawjson.Value) {
		body = append(body, `{"model":`...)
		body = rawjson.AppendString(body, prefix)
		body = append(body, `,"content":{"parts":[{"text":`...)
		body = append(body, text.Raw()...)
		body = append(body, "}]}"...)
		if dims.Kind() == rawjson.Number {
			body = append(body, `,"outputDimensionality":`...)
			body = append(body, dims.Raw()...)
		}
		body = append(body, '}')
	}
	n := 0
	switch input.Kind() {
	case rawjson.String:
		add(input)
		n = 1
	case rawjson.Array:
		for e := input.Elements(); e.Next(); n++ {
			if e.Value().Kind() != rawjson.String {
				return chatreq.BadRequest("input", "input must be a string or an array of strings: this provider embeds text, not tokens")
			}
			if n > 0 {
				body = append(body, ',')
			}
			add(e.Value())
		}
	}
	if n == 0 {
		return chatreq.BadRequest("input", "input must be a non-empty string or array of strings")
	}
	body = append(body, "]}"...)
	reqBuf = body[:0]

	e := &embedding{n: n, b64: b64, reqModel: append([]byte(nil), req.Get("model").Raw()...)}
	return s.Send(sdk.Request{Method: "POST", URL: modelURL(cfg.BaseURL, model, ":batchEmbedContents"), Header: jsonHeaders, Body: body},
		sdk.Handler{Body: e.body, Error: failUpstream})
}

// embedding is an embeddings request's state, for its answer: the number
// of inputs, whether the vectors go out in base64, and the request's model.
type embedding struct {
	n        int
	b64      bool
	reqModel []byte
}

// body translates a batchEmbedContents answer.
func (em *embedding) body(s *sdk.Stream, _ *sdk.Response, body []byte) error {
	rd, err := s.ParseJSON(body, respTape)
	respTape = rd.Tape
	if errors.Is(err, rawjson.ErrSyntax) {
		return errUpstreamBody
	}
	if err != nil {
		return err
	}
	out := append(outBuf[:0], `{"object":"list","data":[`...)
	i := 0
	for e := rd.Root().Get("embeddings").Elements(); e.Next(); i++ {
		values := e.Value().Get("values")
		if values.Kind() != rawjson.Array {
			return errUpstreamBody
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"object":"embedding","index":`...)
		out = strconv.AppendInt(out, int64(i), 10)
		out = append(out, `,"embedding":`...)
		if em.b64 {
			if out, err = appendBase64Floats(out, values); err != nil {
				return err
			}
		} else {
			out = append(out, values.Raw()...)
		}
		out = append(out, '}')
	}
	if i != em.n {
		return &sdk.HTTPError{Status: 502, Message: "the upstream answered with " + strconv.Itoa(i) + " embeddings for " + strconv.Itoa(em.n) + " inputs"}
	}
	out = append(out, `],"model":`...)
	out = append(out, em.reqModel...)
	out = append(out, `,"usage":{"prompt_tokens":0,"total_tokens":0}}`...)
	outBuf = out[:0]
	return s.EmitBody(out)
}

var floatBuf []byte

// appendBase64Floats writes an array of numbers as OpenAI's base64 form:
// little-endian float32s, base64 encoded, as a JSON string.
func appendBase64Floats(b []byte, values rawjson.Value) ([]byte, error) {
	f := floatBuf[:0]
	for e := values.Elements(); e.Next(); {
		raw := e.Value().Raw()
		if len(raw) == 0 || e.Value().Kind() != rawjson.Number {
			return b, errUpstreamBody
		}
		x, err := strconv.ParseFloat(unsafe.String(&raw[0], len(raw)), 32)
		if err != nil {
			return b, errUpstreamBody
		}
		f = binary.LittleEndian.AppendUint32(f, math.Float32bits(float32(x)))
	}
	floatBuf = f[:0]
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, f)
	return append(b, '"'), nil
}
