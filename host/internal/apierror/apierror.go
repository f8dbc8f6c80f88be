// Package apierror is the one error type clients of the /v1 API see: an
// HTTP status with an OpenAI-shaped body,
//
//	{"error":{"message":"...","type":"invalid_request_error","param":null,"code":"model_not_found"}}
//
// Every error path of the server ends in an *Error, so no Go error text or
// stack trace reaches a client.
package apierror

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/llm-proxy/llm-proxy/host/internal/jsondepth"
)

// Error types, as OpenAI names them.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypePermission     = "permission_error"
	TypeNotFound       = "not_found_error"
	TypeRateLimit      = "rate_limit_error"
	TypeAPI            = "api_error"
	TypeTimeout        = "timeout_error"
	TypeOverloaded     = "overloaded_error"
)

// Error is a client-facing error.
type Error struct {
	Status     int
	Type       string
	Message    string
	Param      string
	Code       Code
	RetryAfter string
}

func (e *Error) Error() string { return strconv.Itoa(e.Status) + " " + e.Type + ": " + e.Message }

// New makes an error with the type that fits the status.
func New(status int, code Code, message string) *Error {
	return &Error{Status: status, Type: typeFor(status), Code: code, Message: message}
}

// WithParam sets the offending request parameter.
func (e *Error) WithParam(p string) *Error { e.Param = p; return e }

type wire struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *Code   `json:"code"`
	} `json:"error"`
}

// JSON is the response body.
func (e *Error) JSON() []byte {
	var w wire
	w.Error.Message, w.Error.Type = e.Message, e.Type
	if e.Param != "" {
		w.Error.Param = &e.Param
	}
	if e.Code != NoCode {
		w.Error.Code = &e.Code
	}
	b, _ := json.Marshal(w)
	return b
}

func typeFor(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return TypeAuthentication
	case status == http.StatusForbidden:
		return TypePermission
	case status == http.StatusNotFound:
		return TypeInvalidRequest
	case status == http.StatusTooManyRequests:
		return TypeRateLimit
	case status == http.StatusGatewayTimeout:
		return TypeTimeout
	case status == http.StatusServiceUnavailable:
		return TypeOverloaded
	case status >= 500:
		return TypeAPI
	}
	return TypeInvalidRequest
}

// FromPlugin turns a plugin's failure (its status and an OpenAI error object
// or plain text) into the client's error. Statuses are mapped as a gateway
// should: an upstream 401 or 403 is the proxy's credential problem, not the
// client's, so it becomes 502; 429 keeps its Retry-After; 500, 502 and other
// 5xx become 502, except 503 and 504 which keep their meaning.
func FromPlugin(status int, body []byte, retryAfter string) *Error {
	e := &Error{Status: status}
	// gjson's validator recurses once per level: a plugin's body that nests
	// deeper than any error object does is taken as plain text.
	if jsondepth.Within(body, jsondepth.Max) && gjson.ValidBytes(body) {
		if m := gjson.GetBytes(body, "error.message"); m.Type == gjson.String {
			e.Message = m.String()
			e.Type = gjson.GetBytes(body, "error.type").String()
			e.Code = Code(gjson.GetBytes(body, "error.code").String())
			e.Param = gjson.GetBytes(body, "error.param").String()
		} else if m := gjson.GetBytes(body, "error"); m.Type == gjson.String {
			e.Message = m.String()
		} else if m := gjson.GetBytes(body, "message"); m.Type == gjson.String {
			e.Message = m.String()
		}
	}
	if e.Message == "" {
		e.Message = strings.ToValidUTF8(truncate(string(body), 2048), "")
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	if e.Message == "" {
		e.Message = "the provider answered HTTP " + strconv.Itoa(status)
	}
	switch {
	case status == 401 || status == 403:
		e.Message = "the provider refused the proxy's credentials: " + e.Message
		e.Status, e.Type, e.Code = http.StatusBadGateway, TypeAPI, CodeUpstreamAuthFailed
	case status == 429:
		e.RetryAfter = retryAfter
		if e.RetryAfter == "" {
			e.RetryAfter = retryAfterOf(body)
		}
	case status == 503 || status == 504:
	case status >= 500 || status < 400:
		e.Status = http.StatusBadGateway
	}
	if e.Type == "" {
		e.Type = typeFor(e.Status)
	}
	return e
}

// maxRetryAfter bounds the wait a plugin can ask clients for.
const maxRetryAfter = 24 * 60 * 60

// retryAfterOf is the wait a plugin gave in its failure body's top-level
// "retry_after" (seconds, possibly fractional: a provider that names the
// wait in the body, like Gemini's RetryInfo, has no Retry-After header),
// rounded up to whole seconds as Retry-After wants; "" when absent or not a
// positive number.
func retryAfterOf(body []byte) string {
	v := gjson.GetBytes(body, "retry_after")
	if v.Type != gjson.Number || !(v.Float() > 0) {
		return ""
	}
	return strconv.Itoa(int(math.Ceil(min(v.Float(), maxRetryAfter))))
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
