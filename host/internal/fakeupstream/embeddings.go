package fakeupstream

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"math"
	"net/http"
	"strconv"
)

// DefaultEmbeddingDimensions is the vector length when the request does not
// ask for one with "dimensions".
const DefaultEmbeddingDimensions = 8

const maxEmbeddingDimensions = 4096

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     int             `json:"dimensions"`
}

// embeddingInput is one item to embed: the bytes its vector derives from,
// and its token count.
type embeddingInput struct {
	key    []byte
	tokens int
}

// parseEmbeddingInput accepts the four shapes OpenAI documents: a string, an
// array of strings, an array of token ids, or an array of token-id arrays.
// A mixed array of strings and token arrays is tolerated too.
func parseEmbeddingInput(raw json.RawMessage) ([]embeddingInput, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, false
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, false
		}
		return []embeddingInput{textInput(s)}, true
	case '[':
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil || len(items) == 0 {
			return nil, false
		}
		if first := bytes.TrimSpace(items[0]); len(first) > 0 && first[0] != '"' && first[0] != '[' {
			// A single array of token ids.
			in, ok := tokenInput(raw)
			return []embeddingInput{in}, ok
		}
		out := make([]embeddingInput, 0, len(items))
		for _, it := range items {
			it = bytes.TrimSpace(it)
			if len(it) == 0 {
				return nil, false
			}
			if it[0] == '"' {
				var s string
				if json.Unmarshal(it, &s) != nil {
					return nil, false
				}
				out = append(out, textInput(s))
				continue
			}
			in, ok := tokenInput(it)
			if !ok {
				return nil, false
			}
			out = append(out, in)
		}
		return out, true
	}
	return nil, false
}

func textInput(s string) embeddingInput {
	return embeddingInput{key: []byte(s), tokens: countWords(s)}
}

// tokenInput reads an array of token ids. Its key is the ids in canonical
// decimal form, so whitespace in the request does not change the vector.
func tokenInput(raw []byte) (embeddingInput, bool) {
	var ids []int64
	if json.Unmarshal(raw, &ids) != nil {
		return embeddingInput{}, false
	}
	key := []byte("tokens:")
	for _, id := range ids {
		key = strconv.AppendInt(key, id, 10)
		key = append(key, ',')
	}
	return embeddingInput{key: key, tokens: len(ids)}, true
}

// embed derives a unit-length vector from key: FNV-1a seeds a splitmix64
// sequence whose outputs are mapped to [-1, 1).
func embed(key []byte, dims int) []float32 {
	h := fnv.New64a()
	_, _ = h.Write(key)
	state := h.Sum64()
	v := make([]float32, dims)
	var norm float64
	for i := range v {
		state += 0x9e3779b97f4a7c15
		z := state
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		f := float64(z>>11)/(1<<52) - 1 // [-1, 1)
		v[i] = float32(f)
		norm += f * f
	}
	if norm > 0 {
		scale := 1 / math.Sqrt(norm)
		for i := range v {
			v[i] = float32(float64(v[i]) * scale)
		}
	}
	return v
}

// Embedding returns the vector the server produces for the text input s with
// the given number of dimensions, so that tests can check what came back.
func Embedding(s string, dims int) []float32 {
	if dims <= 0 {
		dims = DefaultEmbeddingDimensions
	}
	return embed([]byte(s), dims)
}

func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request, body []byte) {
	var req embeddingRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest,
			"We could not parse the JSON body of your request: "+err.Error(), typeInvalidRequest, "", "")
		return
	}
	if failByModel(w, req.Model) {
		return
	}
	if req.Model == ModelSlowHeaders && !sleepCtx(r.Context(), SlowHeadersDelay) {
		return
	}
	inputs, ok := parseEmbeddingInput(req.Input)
	if !ok {
		writeError(w, http.StatusBadRequest,
			"'input' must be a string, an array of strings, an array of token ids or an array of token-id arrays, and must not be empty.",
			typeInvalidRequest, "input", "")
		return
	}
	dims := req.Dimensions
	if dims <= 0 {
		dims = DefaultEmbeddingDimensions
	}
	if dims > maxEmbeddingDimensions {
		writeError(w, http.StatusBadRequest, "'dimensions' is too large.", typeInvalidRequest, "dimensions", "")
		return
	}
	asBase64 := req.EncodingFormat == "base64"

	b := make([]byte, 0, 96+len(inputs)*(48+dims*12))
	b = append(b, `{"object":"list","data":[`...)
	tokens := 0
	raw := make([]byte, 4*dims)
	for i, in := range inputs {
		tokens += in.tokens
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"embedding":`...)
		vec := embed(in.key, dims)
		if asBase64 {
			for j, f := range vec {
				binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(f))
			}
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, raw)
			b = append(b, '"')
		} else {
			b = append(b, '[')
			for j, f := range vec {
				if j > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	b = append(b, `],"model":`...)
	b = appendJSONString(b, req.Model)
	b = append(b, `,"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(tokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(tokens), 10)
	b = append(b, "}}"...)
	writeJSON(w, http.StatusOK, b, s.requestID())
}
