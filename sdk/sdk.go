// Package sdk is what a provider plugin for LLM Proxy imports.
//
// A plugin implements Plugin (embed Unimplemented for the operations it does
// not offer), registers it from an init function, and is built for wasip1:
//
//	package main
//
//	import "github.com/llm-proxy/llm-proxy/sdk"
//
//	type plugin struct{ sdk.Unimplemented }
//
//	// One function for the request ...
//	func (plugin) ChatStream(s *sdk.Stream) error {
//		cfg, err := s.Config()
//		if err != nil {
//			return err
//		}
//		body := translate(s.Request())
//		t := &translator{} // this stream's state
//		return s.Send(sdk.Request{Method: "POST", URL: cfg.BaseURL + "/chat", Body: body},
//			sdk.Handler{Event: t.event, End: t.end})
//	}
//
//	// ... one for each upstream event, one for the end.
//	func (t *translator) event(s *sdk.Stream, data []byte) error { return s.EmitChunk(t.chunk(data)) }
//	func (t *translator) end(s *sdk.Stream) error               { return s.Finish() }
//
//	func init() { sdk.Register(plugin{}) }
//	func main()  {}
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o my.wasm .
//	go run github.com/llm-proxy/llm-proxy/sdk/cmd/llmproxy-pack -manifest manifest.json my.wasm
//
// # The model: callbacks, never blocking
//
// An instance of a plugin serves many streams at once (ABI 2, sdk/ABI.md):
// the host calls the plugin once when a stream starts and again whenever
// something arrives for it (an upstream response head, an event, the end
// of a body, an image, a timer), and each call runs to completion. Nothing
// in a plugin waits: Stream.Send returns at once, and the answer comes to
// the Handler given with it. State that must outlive a callback lives in
// the plugin's own values (a translator per stream, captured by the
// Handler's functions); the SDK keeps each Stream until the host says it is
// done.
//
// A Handler with Relay set costs the plugin nothing per event: the host
// sends the upstream's events to the client itself. That is how an
// OpenAI-compatible plugin passes streams through.
//
// # Testing
//
// The same plugin code runs natively: sdk/plugintest drives the callbacks
// from a host backed by net/http, so `go test` exercises a plugin without
// building wasm, and its golden cases run unchanged against the .wasm.
//
// # Performance
//
// Code in a Go wasip1 guest runs roughly an order of magnitude slower than
// native code and reflection is slower still. Keep per-request and per-event
// work free of encoding/json: relay what need not change, and read JSON
// through Stream.ParseJSON (a tape the host builds natively, walked with
// sdk/rawjson).
package sdk

import (
	"errors"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// Plugin is implemented by a provider plugin. Each method starts one stream
// of its operation: it reads the request with Stream.Request and either
// answers at once (EmitBody, Fail) or dispatches an upstream request with
// Stream.Send, whose Handler answers later. Returning an error that was not
// already reported fails the stream (see Stream.Fail for how errors map to
// HTTP statuses).
type Plugin interface {
	// Chat answers an OpenAI chat completion request without streaming:
	// exactly one EmitBody with a chat.completion object.
	Chat(s *Stream) error
	// ChatStream answers a streaming chat completion request: EmitChunk per
	// chat.completion.chunk object, the last with usage when known, then
	// Finish.
	ChatStream(s *Stream) error
	// Embeddings answers an OpenAI embeddings request with one EmitBody.
	Embeddings(s *Stream) error
	// Models lists what the upstream offers, as an OpenAI model list body.
	Models(s *Stream) error
}

// MessagesPlugin is implemented by a plugin that takes Anthropic Messages
// API requests as clients sent them (capability "messages", ABI 2.1), for
// an upstream that speaks that API: what the OpenAI shape cannot carry
// (thinking blocks and their signatures, cache_control, server tools)
// then survives both ways. Messages serves abi.OpMessages (one EmitBody with
// a Messages "message" object) and abi.OpMessagesStream (one EmitChunk per
// event's JSON data, then Finish); Stream.Op tells which. Usually it sends
// the request on and answers with Relay.
type MessagesPlugin interface {
	Messages(s *Stream) error
}

// Unimplemented answers every operation with ErrUnsupported. Embed it so a
// plugin only writes the methods it supports.
type Unimplemented struct{}

func (Unimplemented) Chat(*Stream) error       { return ErrUnsupported }
func (Unimplemented) ChatStream(*Stream) error { return ErrUnsupported }
func (Unimplemented) Embeddings(*Stream) error { return ErrUnsupported }
func (Unimplemented) Models(*Stream) error     { return ErrUnsupported }

var (
	// ErrUnsupported is returned by operations a plugin does not implement.
	ErrUnsupported = errors.New("operation not supported by this provider")
	// ErrClientGone is returned by Emit methods once the client disconnected
	// or the stream was ended by the host.
	ErrClientGone = errors.New("client gone")
	// ErrEnded is returned by Emit methods, Fail and Finish once the stream
	// has ended.
	ErrEnded = errors.New("stream ended")
)

// StatusError is a host function's negative status, as an error.
type StatusError struct {
	Op     string
	Status abi.Status
}

func (e *StatusError) Error() string { return e.Op + ": " + e.Status.String() }

func statusErr(op string, s int32) error {
	switch abi.Status(s) {
	case abi.StatusClientGone:
		return ErrClientGone
	case abi.StatusEnded:
		return ErrEnded
	}
	return &StatusError{Op: op, Status: abi.Status(s)}
}

// HTTPError is an error with the HTTP status the client should get.
type HTTPError struct {
	Status  int
	Message string
}

func (e *HTTPError) Error() string { return e.Message }

var registered Plugin

// Register installs the plugin. Call it once, from an init function.
func Register(p Plugin) {
	if registered != nil {
		panic("sdk: Register called twice")
	}
	registered = p
}

// Registered returns the plugin given to Register, or nil.
func Registered() Plugin { return registered }
