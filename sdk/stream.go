package sdk

import (
	"bytes"
	"errors"
	"strconv"
	"time"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// Stream is one client request a plugin serves, from the Plugin method that
// starts it to its end. It is handed to every callback that concerns it and
// stays the same value, so a plugin may keep it (or its own per-stream state
// next to it) until the stream ends. Like everything in a plugin, it is not
// safe for concurrent use.
type Stream struct {
	g       *Guest
	id      int32
	op      abi.Op
	ended   bool    // the guest ended it (body, fail, finish) or the host did
	req     []byte  // the request, as read during callback reqSeq
	reqSeq  uint64  //
	handles []int32 // upstream requests and image fetches started
	timer   func(*Stream) error
}

// ID is the stream's id on this instance.
func (s *Stream) ID() int32 { return s.id }

// Op is the operation being performed.
func (s *Stream) Op() abi.Op { return s.op }

// Ended reports whether the stream is over: the plugin answered, finished
// or failed it, or the client went away.
func (s *Stream) Ended() bool { return s.ended }

// reqBuf keeps the request buffer of one callback for the next, so reading
// requests does not allocate once it has grown.
var reqBuf = make([]byte, 0, 16<<10)

// Request returns the unified request: the client's OpenAI-format JSON body
// after the host's normalisation (sdk/ABI.md, "The unified request"). It
// can be read in any callback of the stream; the slice belongs to the SDK
// and is valid until the callback returns. Keep a copy of what is needed
// later.
func (s *Stream) Request() []byte {
	if s.req != nil && s.reqSeq == s.g.seq {
		return s.req
	}
	n := s.g.host.RequestRead(s.id, reqBuf[:0:cap(reqBuf)])
	if n < 0 {
		return nil
	}
	if int(n) > cap(reqBuf) {
		reqBuf = make([]byte, 0, n)
		if n = s.g.host.RequestRead(s.id, reqBuf); n < 0 || int(n) > cap(reqBuf) {
			return nil
		}
	}
	s.req, s.reqSeq = reqBuf[:n], s.g.seq
	return s.req
}

// Config is the provider's configuration as the host hands it to the plugin.
// It never contains the provider's secret.
type Config struct {
	// Provider is the provider's name from the host config.
	Provider string
	// BaseURL is the provider's base URL without a trailing slash.
	BaseURL string
	// Options is the provider's free-form options table, an object (or an
	// absent value when the host sent none).
	Options rawjson.Value
	doc     rawjson.Doc
}

// Option returns one option; its Kind is rawjson.Invalid when it is not
// set.
func (cfg *Config) Option(name string) rawjson.Value { return cfg.Options.Get(name) }

// OptionString returns a string option, decoded; ok is false when it is
// not set or not a string.
func (cfg *Config) OptionString(name string) (string, bool) {
	s, ok := cfg.Option(name).Str()
	return string(s), ok
}

// OptionInt returns an integer option; ok is false when it is not set or
// not an integer.
func (cfg *Config) OptionInt(name string) (int64, bool) { return cfg.Option(name).Int() }

// The decoded configs of recent providers, keyed by their JSON: decoding
// happens once per provider per instance, not per stream. Decoding walks
// the host's JSON tape: a guest that links encoding/json grows by about
// 1.5 MB of code, which every instance and the host's compiled copy pay.
var (
	configCache = map[string]*Config{}
	configBuf   = make([]byte, 0, 1<<10)
)

// Config returns the provider's configuration. The value is shared by the
// streams of the same provider: do not modify it.
func (s *Stream) Config() (*Config, error) {
	n := s.g.host.ConfigRead(s.id, configBuf[:0:cap(configBuf)])
	if n >= 0 && int(n) > cap(configBuf) {
		configBuf = make([]byte, 0, n)
		n = s.g.host.ConfigRead(s.id, configBuf)
	}
	if n < 0 || int(n) > cap(configBuf) {
		return nil, &StatusError{Op: "config_read", Status: abi.StatusInvalid}
	}
	raw := configBuf[:n]
	if cfg, ok := configCache[string(raw)]; ok {
		return cfg, nil
	}
	doc, err := s.g.ParseJSON(bytes.Clone(raw), nil)
	root := doc.Root()
	if err != nil || root.Kind() != rawjson.Object {
		return nil, errors.New("the provider config is not a JSON object")
	}
	cfg := &Config{doc: doc}
	cfg.Options = cfg.doc.Root().Get("options")
	if k := cfg.Options.Kind(); k != rawjson.Invalid && k != rawjson.Object {
		return nil, errors.New("the provider config's options are not an object")
	}
	if v, ok := root.Get("provider").Str(); ok {
		cfg.Provider = string(v)
	}
	if v, ok := root.Get("base_url").Str(); ok {
		cfg.BaseURL = string(v)
	}
	if len(configCache) > 32 {
		clear(configCache)
	}
	configCache[string(raw)] = cfg
	return cfg, nil
}

// EmitChunk queues one streamed event for the client; the host frames it as
// an SSE data event. It never waits: the host holds what the client has not
// read yet and stops reading the upstream while too much is waiting. It
// returns ErrClientGone once the client went away, and a *StatusError with
// abi.StatusLimit once the stream's output limits are reached (the host
// then ends the stream).
func (s *Stream) EmitChunk(chunk []byte) error { return s.emit(abi.KindChunk, chunk) }

// EmitBody sends a whole, non-streamed JSON response. It ends the stream.
func (s *Stream) EmitBody(body []byte) error {
	err := s.emit(abi.KindBody, body)
	if err == nil {
		s.ended = true
	}
	return err
}

// EmitUsage reports token usage (an OpenAI usage object) to the host
// without sending anything to the client.
func (s *Stream) EmitUsage(usage []byte) error { return s.emit(abi.KindUsage, usage) }

func (s *Stream) emit(kind abi.Kind, b []byte) error {
	if r := s.g.host.Emit(s.id, kind, b); r < 0 {
		if r == int32(abi.StatusClientGone) || r == int32(abi.StatusEnded) || r == int32(abi.StatusLimit) {
			s.ended = true // the host has ended the stream
		}
		return statusErr("emit", r)
	}
	return nil
}

// Finish ends a streamed chat normally: the host sends the client the
// closing [DONE].
func (s *Stream) Finish() error {
	if s.ended {
		return ErrEnded
	}
	return s.ending("finish", s.g.host.Finish(s.id))
}

// ending records the result of a host function that ends the stream: it
// has ended unless the host refused the call as invalid.
func (s *Stream) ending(op string, r int32) error {
	if r < 0 {
		if r != int32(abi.StatusInvalid) {
			s.ended = true
		}
		return statusErr(op, r)
	}
	s.ended = true
	return nil
}

// Fail ends the stream with an error. body is either an OpenAI error
// object ({"error":{"message":...,"type":...}}), which the host passes on, or
// plain text, which becomes the message. The host maps the status for the
// client (upstream 5xx become 502; 429 keeps the upstream Retry-After).
// During a stream whose first chunk was sent, the error becomes an error
// event.
func (s *Stream) Fail(httpStatus int, body []byte) error {
	if s.ended {
		return ErrEnded
	}
	return s.ending("fail", s.g.host.Fail(s.id, int32(httpStatus), body))
}

// maxErrorBody is how much of an upstream error body FailUpstream passes on.
const maxErrorBody = 64 << 10

// FailUpstream ends the stream with the status and error body of an
// upstream response that was not successful. It is what a Handler without
// an Error function does.
func (s *Stream) FailUpstream(r *Response, body []byte) error {
	if len(body) > maxErrorBody {
		body = body[:maxErrorBody]
	}
	if len(body) == 0 {
		body = []byte("upstream returned HTTP " + strconv.Itoa(r.StatusCode))
	}
	return s.Fail(r.StatusCode, body)
}

// After calls fn once, in a callback of its own, after d (at millisecond
// granularity). A stream has one timer: After replaces a pending one. A
// plugin that must pace its own output (one that answers without an
// upstream) waits this way: nothing in a plugin may sleep.
func (s *Stream) After(d time.Duration, fn func(s *Stream) error) error {
	if s.ended {
		return ErrEnded
	}
	ms := d.Milliseconds()
	if ms < 0 || ms > 1<<31-1 {
		return &StatusError{Op: "set_timer", Status: abi.StatusInvalid}
	}
	if r := s.g.host.SetTimer(s.id, int32(ms)); r < 0 {
		return statusErr("set_timer", r)
	}
	s.timer = fn
	return nil
}

// Log writes a line to the host's log, tagged with the plugin's name.
func (s *Stream) Log(level int32, msg string) { s.g.host.Log(level, []byte(msg)) }

// ParseJSON checks that data holds one JSON value and returns it as a
// rawjson.Doc, whose tape the host builds natively (json_tape): walking a
// Doc costs the guest a few steps per value instead of a step per byte.
// tape is reused when it is large enough; keep it (doc.Tape) for the next
// call to parse without allocating. Malformed input gives rawjson.ErrSyntax.
func (s *Stream) ParseJSON(data []byte, tape []uint32) (rawjson.Doc, error) {
	return s.g.ParseJSON(data, tape)
}

// ParseJSON is Stream.ParseJSON for code that has no stream at hand.
func (g *Guest) ParseJSON(data []byte, tape []uint32) (rawjson.Doc, error) {
	for {
		n := g.host.JSONTape(data, tape[:0:cap(tape)])
		switch {
		case n == int32(abi.StatusMalformed) || n == 0:
			return rawjson.Doc{Data: data, Tape: tape[:0]}, rawjson.ErrSyntax
		case n < 0:
			return rawjson.Doc{Data: data, Tape: tape[:0]}, statusErr("json_tape", n)
		case int(n)*rawjson.EntryWords > cap(tape):
			tape = make([]uint32, 0, int(n)*rawjson.EntryWords+int(n)) // room to grow
			continue
		}
		return rawjson.Doc{Data: data, Tape: tape[:int(n)*rawjson.EntryWords]}, nil
	}
}
