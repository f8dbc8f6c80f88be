package sdk

import (
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// Call is one request handled by a plugin. It is valid only during the
// Plugin method it was passed to, and is not safe for concurrent use.
type Call struct {
	host     Host
	op       abi.Op
	req      []byte
	reqRead  bool
	open     []int32
	finished bool // a body was emitted or Fail was called
	scratch  []byte
}

// Op is the operation being performed.
func (c *Call) Op() abi.Op { return c.op }

// Request returns the unified request: the client's OpenAI-format JSON body
// after the host's normalisation (sdk/ABI.md, "The unified request"). The
// slice belongs to the SDK and stays valid until the call ends.
func (c *Call) Request() []byte {
	if !c.reqRead {
		c.req = readAll(c.host.RequestRead, reqBuf[:0])
		reqBuf = c.req[:0]
		c.reqRead = true
	}
	return c.req
}

// reqBuf keeps the request buffer of one call for the next, so a warm
// instance reads requests without allocating.
var reqBuf = make([]byte, 0, 16<<10)

// readAll implements the "returns the full length, writes only if it fits"
// convention of request_read and config_read.
func readAll(read func([]byte) int32, buf []byte) []byte {
	n := read(buf[:0:cap(buf)])
	if n < 0 {
		return nil
	}
	if int(n) > cap(buf) {
		buf = make([]byte, 0, n)
		n = read(buf)
		if n < 0 || int(n) > cap(buf) {
			return nil
		}
	}
	return buf[:n]
}

// Config is the provider's configuration as the host hands it to the plugin.
// It never contains the provider's secret.
type Config struct {
	// Provider is the provider's name from the host config.
	Provider string `json:"provider"`
	// BaseURL is the provider's base URL without a trailing slash.
	BaseURL string `json:"base_url"`
	// Options is the provider's free-form options table.
	Options map[string]json.RawMessage `json:"options"`
}

// Option decodes one option into v and reports whether it was set.
func (cfg *Config) Option(name string, v any) bool {
	raw, ok := cfg.Options[name]
	if !ok {
		return false
	}
	return json.Unmarshal(raw, v) == nil
}

// The decoded configs of recent providers, keyed by their JSON. Decoding
// happens once per provider per instance, not per request.
var configCache = map[string]*Config{}

// Config returns the provider's configuration.
func (c *Call) Config() (*Config, error) {
	raw := readAll(c.host.ConfigRead, c.scratch[:0])
	if raw == nil {
		return nil, &StatusError{Op: "config_read", Status: abi.StatusInvalid}
	}
	c.scratch = raw[:0]
	if cfg, ok := configCache[string(raw)]; ok {
		return cfg, nil
	}
	cfg := new(Config)
	if err := json.Unmarshal(raw, cfg); err != nil {
		return nil, err
	}
	if len(configCache) > 32 {
		clear(configCache)
	}
	configCache[string(raw)] = cfg
	return cfg, nil
}

// Send starts an upstream request and returns once the response head has
// arrived. The host decides whether the destination is allowed and adds the
// provider's credentials; headers must not carry them.
func (c *Call) Send(method, url string, headers [][2]string, body []byte) (*Response, error) {
	for _, h := range headers {
		if strings.ContainsAny(h[0], "\r\n:") || strings.ContainsAny(h[1], "\r\n") {
			return nil, &StatusError{Op: "http_send", Status: abi.StatusInvalid}
		}
	}
	head := abi.AppendHead(c.scratch[:0], method, url, headers)
	c.scratch = head[:0]
	h := c.host.HTTPSend(head, body)
	if h < 0 {
		return nil, statusErr("http_send", h)
	}
	c.open = append(c.open, h)
	st := c.host.HTTPStatus(h)
	if st < 0 {
		return nil, statusErr("http_status", st)
	}
	return &Response{StatusCode: int(st), call: c, handle: h}, nil
}

// Response is an upstream response whose body is read as it arrives.
type Response struct {
	StatusCode int
	call       *Call
	handle     int32
	closed     bool
}

// Header returns the first value of an upstream response header.
func (r *Response) Header(name string) (string, bool) {
	buf := make([]byte, 0, 256)
	n := r.call.host.HTTPHeader(r.handle, []byte(name), buf)
	if n < 0 {
		return "", false
	}
	if int(n) > cap(buf) {
		buf = make([]byte, 0, n)
		n = r.call.host.HTTPHeader(r.handle, []byte(name), buf)
		if n < 0 || int(n) > cap(buf) {
			return "", false
		}
	}
	return string(buf[:n]), true
}

// Read reads whatever part of the body has arrived, at most len(p) bytes,
// waiting only until some bytes are there. It returns io.EOF at the end.
func (r *Response) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n := r.call.host.HTTPRead(r.handle, p[:len(p):len(p)])
	switch {
	case n > 0:
		return int(n), nil
	case n == 0:
		return 0, io.EOF
	}
	return 0, statusErr("http_read", n)
}

// ReadAll reads the rest of the body, up to max bytes.
func (r *Response) ReadAll(max int) ([]byte, error) {
	buf := make([]byte, 0, 4096)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
		if len(buf) > max {
			return buf, &StatusError{Op: "http_read", Status: abi.StatusLimit}
		}
	}
}

// Close releases the upstream request. Calls close every handle they left
// open when they end, so Close is optional.
func (r *Response) Close() {
	if !r.closed {
		r.closed = true
		r.call.host.HTTPClose(r.handle)
		for i, h := range r.call.open {
			if h == r.handle {
				r.call.open = append(r.call.open[:i], r.call.open[i+1:]...)
				break
			}
		}
	}
}

func (c *Call) closeAll() {
	for _, h := range c.open {
		c.host.HTTPClose(h)
	}
	c.open = c.open[:0]
}

// EmitChunk sends one streamed event to the client; the host frames it as
// an SSE data event and flushes it. It returns ErrClientGone once the client
// has disconnected.
func (c *Call) EmitChunk(chunk []byte) error { return c.emit(abi.KindChunk, chunk) }

// EmitBody sends a whole, non-streamed JSON response.
func (c *Call) EmitBody(body []byte) error {
	c.finished = true
	return c.emit(abi.KindBody, body)
}

// EmitUsage reports token usage (an OpenAI usage object) to the host
// without sending anything to the client.
func (c *Call) EmitUsage(usage []byte) error { return c.emit(abi.KindUsage, usage) }

func (c *Call) emit(kind abi.Kind, b []byte) error {
	if s := c.host.Emit(kind, b); s < 0 {
		return statusErr("emit", s)
	}
	return nil
}

// Fail ends the request with an error. body is either an OpenAI error
// object ({"error":{"message":...,"type":...}}), which the host passes on, or
// plain text, which becomes the message. The host maps the status for the
// client (upstream 5xx become 502; 429 keeps the upstream Retry-After).
// During a stream that has started, the error becomes an error event.
func (c *Call) Fail(httpStatus int, body []byte) error {
	c.finished = true
	if s := c.host.Fail(int32(httpStatus), body); s < 0 {
		return statusErr("fail", s)
	}
	return nil
}

// FailUpstream ends the request with the status and error body of an
// upstream response that was not successful.
func (c *Call) FailUpstream(r *Response) error {
	body, _ := r.ReadAll(64 << 10)
	if len(body) == 0 {
		body = []byte("upstream returned HTTP " + strconv.Itoa(r.StatusCode))
	}
	return c.Fail(r.StatusCode, body)
}

// Log writes a line to the host's log, tagged with the plugin's name.
func (c *Call) Log(level int32, msg string) {
	c.host.Log(level, []byte(msg))
}

// HTTPError is an error with the HTTP status the client should get.
type HTTPError struct {
	Status  int
	Message string
}

func (e *HTTPError) Error() string { return e.Message }

// failWith reports an error returned by a Plugin method.
func (c *Call) failWith(err error) {
	var he *HTTPError
	var se *StatusError
	switch {
	case errors.Is(err, ErrClientGone):
		return
	case errors.Is(err, ErrUnsupported):
		_ = c.Fail(400, []byte(err.Error()))
	case errors.As(err, &he):
		_ = c.Fail(he.Status, []byte(he.Message))
	case errors.As(err, &se):
		status := 502
		switch se.Status {
		case abi.StatusTimeout:
			status = 504
		case abi.StatusInvalid:
			status = 500
		}
		_ = c.Fail(status, []byte(se.Error()))
	default:
		_ = c.Fail(502, []byte(err.Error()))
	}
}
