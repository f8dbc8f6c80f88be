package apierror_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
)

func TestNewTypeForStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status   int
		wantType string
	}{
		{400, apierror.TypeInvalidRequest},
		{401, apierror.TypeAuthentication},
		{403, apierror.TypePermission},
		{404, apierror.TypeInvalidRequest},
		{409, apierror.TypeInvalidRequest},
		{413, apierror.TypeInvalidRequest},
		{422, apierror.TypeInvalidRequest},
		{429, apierror.TypeRateLimit},
		{500, apierror.TypeAPI},
		{501, apierror.TypeAPI},
		{502, apierror.TypeAPI},
		{503, apierror.TypeOverloaded},
		{504, apierror.TypeTimeout},
		{599, apierror.TypeAPI},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			t.Parallel()
			e := apierror.New(tt.status, "some_code", "some message")
			if e.Status != tt.status || e.Type != tt.wantType || e.Code != "some_code" || e.Message != "some message" {
				t.Fatalf("New(%d) = %+v, want type %q", tt.status, e, tt.wantType)
			}
			if e.Param != "" || e.RetryAfter != "" {
				t.Fatalf("New(%d) set Param/RetryAfter: %+v", tt.status, e)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	t.Parallel()
	var err error = apierror.New(404, "model_not_found", "no such model")
	if got, want := err.Error(), "404 invalid_request_error: no such model"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestJSONShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  *apierror.Error
		want string
	}{
		{
			name: "code and param",
			err:  apierror.New(400, "invalid_value", "temperature must be <= 2").WithParam("temperature"),
			want: `{"error":{"message":"temperature must be \u003c= 2","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}`,
		},
		{
			name: "null param",
			err:  apierror.New(404, "model_not_found", "The model `x` does not exist"),
			want: `{"error":{"message":"The model ` + "`x`" + ` does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"}}`,
		},
		{
			name: "null param and code",
			err:  apierror.New(500, "", "internal error"),
			want: `{"error":{"message":"internal error","type":"api_error","param":null,"code":null}}`,
		},
		{
			name: "empty message stays a string",
			err:  &apierror.Error{Status: 500, Type: "api_error"},
			want: `{"error":{"message":"","type":"api_error","param":null,"code":null}}`,
		},
		{
			name: "quotes and newlines escaped",
			err:  apierror.New(502, "", "line1\n\"quoted\""),
			want: `{"error":{"message":"line1\n\"quoted\"","type":"api_error","param":null,"code":null}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.err.JSON()
			if string(got) != tt.want {
				t.Fatalf("JSON()\n got %s\nwant %s", got, tt.want)
			}
			// Exactly one top-level key and exactly four inner keys.
			var outer map[string]json.RawMessage
			if err := json.Unmarshal(got, &outer); err != nil {
				t.Fatalf("JSON() is not an object: %v", err)
			}
			if k := sortedKeys(outer); !reflect.DeepEqual(k, []string{"error"}) {
				t.Fatalf("JSON() top-level keys = %v, want only error", k)
			}
			var inner map[string]any
			if err := json.Unmarshal(outer["error"], &inner); err != nil {
				t.Fatalf("error is not an object: %v", err)
			}
			if k := sortedKeys(inner); !reflect.DeepEqual(k, []string{"code", "message", "param", "type"}) {
				t.Fatalf("error keys = %v", k)
			}
		})
	}
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func TestFromPlugin(t *testing.T) {
	t.Parallel()
	const authPrefix = "the provider refused the proxy's credentials: "
	longText := strings.Repeat("abcdefgh", 1000) // 8000 bytes

	tests := []struct {
		name       string
		status     int
		body       string
		retryAfter string

		wantStatus     int
		wantType       string
		wantMessage    string
		wantCode       apierror.Code
		wantParam      string
		wantRetryAfter string
	}{
		{
			name:   "openai 429 keeps status, retry-after and fields",
			status: 429,
			body: `{"error":{"message":"Rate limit reached for gpt-4o","type":"requests",` +
				`"param":null,"code":"rate_limit_exceeded"}}`,
			retryAfter: "20",
			wantStatus: 429, wantType: "requests", wantMessage: "Rate limit reached for gpt-4o",
			wantCode: "rate_limit_exceeded", wantRetryAfter: "20",
		},
		{
			name: "429 plain text gets the rate limit type", status: 429, body: "slow down", retryAfter: "Wed, 21 Oct 2015 07:28:00 GMT",
			wantStatus: 429, wantType: apierror.TypeRateLimit, wantMessage: "slow down", wantRetryAfter: "Wed, 21 Oct 2015 07:28:00 GMT",
		},
		{
			name: "429 without retry-after", status: 429, body: "slow down",
			wantStatus: 429, wantType: apierror.TypeRateLimit, wantMessage: "slow down",
		},
		{
			name: "429 retry_after from the body, rounded up", status: 429,
			body:       `{"error":{"message":"quota","type":"rate_limit_error"},"retry_after":12.2}`,
			wantStatus: 429, wantType: apierror.TypeRateLimit, wantMessage: "quota", wantRetryAfter: "13",
		},
		{
			name: "429 upstream header wins over the body", status: 429, retryAfter: "7",
			body:       `{"error":{"message":"quota"},"retry_after":30}`,
			wantStatus: 429, wantType: apierror.TypeRateLimit, wantMessage: "quota", wantRetryAfter: "7",
		},
		{
			name: "429 retry_after capped at a day", status: 429,
			body:       `{"error":{"message":"quota"},"retry_after":1e12}`,
			wantStatus: 429, wantType: apierror.TypeRateLimit, wantMessage: "quota", wantRetryAfter: "86400",
		},
		{
			name: "429 retry_after ignored when not a positive number", status: 429,
			body:       `{"error":{"message":"quota"},"retry_after":"soon"}`,
			wantStatus: 429, wantType: apierror.TypeRateLimit, wantMessage: "quota",
		},
		{
			name: "429 retry_after ignored when negative", status: 429,
			body:       `{"error":{"message":"quota"},"retry_after":-5}`,
			wantStatus: 429, wantType: apierror.TypeRateLimit, wantMessage: "quota",
		},
		{
			name: "503 ignores retry_after", status: 503,
			body:       `{"error":{"message":"busy"},"retry_after":5}`,
			wantStatus: 503, wantType: apierror.TypeOverloaded, wantMessage: "busy",
		},
		{
			name: "500 becomes 502", status: 500, body: "internal failure",
			wantStatus: 502, wantType: apierror.TypeAPI, wantMessage: "internal failure",
		},
		{
			name: "500 openai body keeps its fields", status: 500,
			body:       `{"error":{"message":"The server had an error","type":"server_error","code":"internal"}}`,
			wantStatus: 502, wantType: "server_error", wantMessage: "The server had an error", wantCode: "internal",
		},
		{
			name: "501 becomes 502", status: 501, body: "nope",
			wantStatus: 502, wantType: apierror.TypeAPI, wantMessage: "nope",
		},
		{
			name: "502 stays 502", status: 502, body: "bad gateway upstream",
			wantStatus: 502, wantType: apierror.TypeAPI, wantMessage: "bad gateway upstream",
		},
		{
			name: "503 stays 503", status: 503, body: "overloaded",
			wantStatus: 503, wantType: apierror.TypeOverloaded, wantMessage: "overloaded",
		},
		{
			name: "504 stays 504", status: 504, body: "timed out",
			wantStatus: 504, wantType: apierror.TypeTimeout, wantMessage: "timed out",
		},
		{
			name: "401 openai body becomes 502 auth failure", status: 401,
			body:       `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`,
			wantStatus: 502, wantType: apierror.TypeAPI, wantMessage: authPrefix + "Incorrect API key provided",
			wantCode: "upstream_auth_failed",
		},
		{
			name: "403 plain text becomes 502 auth failure", status: 403, body: "forbidden",
			wantStatus: 502, wantType: apierror.TypeAPI, wantMessage: authPrefix + "forbidden", wantCode: "upstream_auth_failed",
		},
		{
			name: "401 empty body", status: 401,
			wantStatus: 502, wantType: apierror.TypeAPI, wantMessage: authPrefix + "Unauthorized", wantCode: "upstream_auth_failed",
		},
		{
			name: "400 openai body stays 400", status: 400,
			body:       `{"error":{"message":"messages must not be empty","type":"invalid_request_error","param":"messages","code":null}}`,
			wantStatus: 400, wantType: apierror.TypeInvalidRequest, wantMessage: "messages must not be empty", wantParam: "messages",
		},
		{
			name: "400 plain text", status: 400, body: "bad request body",
			wantStatus: 400, wantType: apierror.TypeInvalidRequest, wantMessage: "bad request body",
		},
		{
			name: "404 empty body gets the status text", status: 404,
			wantStatus: 404, wantType: apierror.TypeInvalidRequest, wantMessage: "Not Found",
		},
		{
			name: "500 empty body gets the original status text", status: 500,
			wantStatus: 502, wantType: apierror.TypeAPI, wantMessage: "Internal Server Error",
		},
		{
			name: "error as a string", status: 400, body: `{"error":"context too long"}`,
			wantStatus: 400, wantType: apierror.TypeInvalidRequest, wantMessage: "context too long",
		},
		{
			name: "top-level message", status: 422, body: `{"message":"field x is required","status":422}`,
			wantStatus: 422, wantType: apierror.TypeInvalidRequest, wantMessage: "field x is required",
		},
		{
			name: "error.message wins over message", status: 400, body: `{"message":"outer","error":{"message":"inner"}}`,
			wantStatus: 400, wantType: apierror.TypeInvalidRequest, wantMessage: "inner",
		},
		{
			name: "unknown JSON shape becomes the message", status: 400, body: `{"detail":"nope"}`,
			wantStatus: 400, wantType: apierror.TypeInvalidRequest, wantMessage: `{"detail":"nope"}`,
		},
		{
			name: "non-string error.message falls back to the body", status: 400, body: `{"error":{"message":42}}`,
			wantStatus: 400, wantType: apierror.TypeInvalidRequest, wantMessage: `{"error":{"message":42}}`,
		},
		{
			name: "truncated JSON is plain text", status: 500, body: `{"error":{"message":"cut`,
			wantStatus: 502, wantType: apierror.TypeAPI, wantMessage: `{"error":{"message":"cut`,
		},
		{
			name: "long plain text truncated", status: 500, body: longText,
			wantStatus: 502, wantType: apierror.TypeAPI, wantMessage: longText[:2048],
		},
		{
			name: "plain text of exactly 2048 bytes kept", status: 400, body: longText[:2048],
			wantStatus: 400, wantType: apierror.TypeInvalidRequest, wantMessage: longText[:2048],
		},
		{
			name: "retry-after ignored off 429", status: 400, body: "x", retryAfter: "5",
			wantStatus: 400, wantType: apierror.TypeInvalidRequest, wantMessage: "x",
		},
		{
			name: "non-error status becomes 502", status: 200, body: "ok?",
			wantStatus: 502, wantType: apierror.TypeAPI, wantMessage: "ok?",
		},
		{
			name: "zero status becomes 502", status: 0, body: "no status",
			wantStatus: 502, wantType: apierror.TypeAPI, wantMessage: "no status",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := apierror.FromPlugin(tt.status, []byte(tt.body), tt.retryAfter)
			want := apierror.Error{
				Status: tt.wantStatus, Type: tt.wantType, Message: tt.wantMessage,
				Code: tt.wantCode, Param: tt.wantParam, RetryAfter: tt.wantRetryAfter,
			}
			if *e != want {
				t.Fatalf("FromPlugin(%d, %.80q, %q)\n got %+v\nwant %+v", tt.status, tt.body, tt.retryAfter, *e, want)
			}
			if !json.Valid(e.JSON()) {
				t.Fatalf("JSON() is not valid: %s", e.JSON())
			}
		})
	}
}

func TestFromPluginTruncatesMultibyteText(t *testing.T) {
	t.Parallel()
	body := []byte(strings.Repeat("é", 3000)) // 6000 bytes, two per rune
	body = append([]byte("x"), body...)       // shift so byte 2048 splits a rune
	e := apierror.FromPlugin(500, body, "")
	if len(e.Message) > 2048 {
		t.Fatalf("message is %d bytes, want at most 2048", len(e.Message))
	}
	if !bytes.HasPrefix(body, []byte(e.Message)) {
		t.Fatal("message is not a prefix of the body")
	}
	js := e.JSON()
	var decoded struct {
		Error struct{ Message string }
	}
	if err := json.Unmarshal(js, &decoded); err != nil {
		t.Fatalf("JSON() does not decode: %v", err)
	}
	if !utf8.ValidString(decoded.Error.Message) {
		t.Fatal("decoded message is not valid UTF-8")
	}
}

// TestFromPluginDeeplyNested: a plugin's error body that nests thousands of
// arrays is read as text; validating it as JSON recursed once per level and
// overflowed the stack, ending the process.
func TestFromPluginDeeplyNested(t *testing.T) {
	t.Parallel()
	body := []byte(`{"error":{"message":` + strings.Repeat("[", 6_500_000))
	e := apierror.FromPlugin(500, body, "")
	if e.Status != 502 || !strings.HasPrefix(e.Message, `{"error":{"message":[[[`) || len(e.Message) > 2048 {
		t.Fatalf("%d %.80q (%d bytes)", e.Status, e.Message, len(e.Message))
	}
}

func FuzzFromPlugin(f *testing.F) {
	f.Add(429, []byte(`{"error":{"message":"slow","type":"requests","code":"rl"}}`), "3")
	f.Add(401, []byte(`{"error":{"message":"bad key"}}`), "")
	f.Add(500, []byte(""), "")
	f.Add(503, []byte(`{"error":"down"}`), "")
	f.Add(400, []byte(`{"message":"m"}`), "")
	f.Add(200, []byte("plain"), "")
	f.Add(-1, []byte{0xff, 0xfe, '"'}, "x")
	f.Add(1<<31-1, []byte(`{"error":{"message":""}}`), "")
	f.Add(404, []byte(`{"error":{"message":"\u0000\ud800"}}`), "")
	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfter string) {
		e := apierror.FromPlugin(status, body, retryAfter)
		if e == nil {
			t.Fatal("FromPlugin returned nil")
		}
		if e.Status < 400 || e.Status > 599 {
			t.Fatalf("FromPlugin(%d, %q) status = %d, want 400..599", status, body, e.Status)
		}
		if e.Type == "" {
			t.Fatalf("FromPlugin(%d, %q) has no type", status, body)
		}
		if status == 429 {
			if e.RetryAfter != retryAfter {
				t.Fatalf("429 RetryAfter = %q, want %q", e.RetryAfter, retryAfter)
			}
		} else if e.RetryAfter != "" {
			t.Fatalf("status %d got RetryAfter %q", status, e.RetryAfter)
		}
		js := e.JSON()
		if !json.Valid(js) {
			t.Fatalf("JSON() is not valid JSON: %q", js)
		}
		var decoded struct {
			Error struct {
				Message *string `json:"message"`
				Type    *string `json:"type"`
			} `json:"error"`
		}
		if err := json.Unmarshal(js, &decoded); err != nil {
			t.Fatalf("JSON() does not decode: %v", err)
		}
		if decoded.Error.Message == nil || decoded.Error.Type == nil {
			t.Fatalf("JSON() lacks message or type: %s", js)
		}
		if *decoded.Error.Message == "" {
			t.Fatalf("FromPlugin(%d, %q) gave an empty message", status, body)
		}
	})
}
