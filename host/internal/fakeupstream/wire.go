package fakeupstream

import (
	"net/http"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

const (
	typeInvalidRequest = "invalid_request_error"
	systemFingerprint  = "fp_fakeupstream"
)

// writeError sends an OpenAI error envelope:
//
//	{"error":{"message":...,"type":...,"param":...,"code":...}}
//
// An empty param or code is sent as JSON null, as OpenAI does.
func writeError(w http.ResponseWriter, status int, message, typ, param, code string) {
	b := make([]byte, 0, 128+len(message))
	b = append(b, `{"error":{"message":`...)
	b = appendJSONString(b, message)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, typ)
	b = append(b, `,"param":`...)
	b = appendNullableString(b, param)
	b = append(b, `,"code":`...)
	b = appendNullableString(b, code)
	b = append(b, "}}"...)
	writeJSON(w, status, b, "")
}

// writeJSON sends a complete JSON body with an explicit Content-Length.
func writeJSON(w http.ResponseWriter, status int, body []byte, requestID string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if requestID != "" {
		h.Set("X-Request-Id", requestID)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func appendNullableString(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return appendJSONString(dst, s)
}

// appendJSONString appends s as a JSON string literal (the SDK's encoder:
// invalid UTF-8 becomes U+FFFD, U+2028/U+2029 are escaped).
func appendJSONString(dst []byte, s string) []byte { return rawjson.AppendString(dst, s) }

// countWords counts runs of non-space characters; it is the fake's token
// count.
func countWords(s string) int {
	n := 0
	inWord := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			inWord = false
		} else if !inWord {
			inWord = true
			n++
		}
	}
	return n
}

// splitText cuts s into n pieces of roughly equal byte length whose
// concatenation is exactly s. Cuts never fall inside a UTF-8 sequence. When
// s is shorter than n some pieces are empty.
func splitText(s string, n int) []string {
	if n <= 1 {
		return []string{s}
	}
	parts := make([]string, n)
	prev := 0
	for i := 1; i <= n; i++ {
		end := len(s)
		if i < n {
			end = i * len(s) / n
			if end < prev {
				end = prev
			}
			for end < len(s) && !utf8.RuneStart(s[end]) {
				end++
			}
		}
		parts[i-1] = s[prev:end]
		prev = end
	}
	return parts
}
