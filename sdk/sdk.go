// Package sdk is what a provider plugin for LLM Proxy imports.
//
// A plugin implements Plugin (embed Unimplemented for the operations it does
// not offer), registers it from an init function, and is built for wasip1:
//
//	package main
//
//	import "github.com/llm-proxy/llm-proxy/sdk"
//
//	type echo struct{ sdk.Unimplemented }
//
//	func (echo) Chat(c *sdk.Call) error {
//		return c.EmitBody([]byte(`{"object":"chat.completion", ...}`))
//	}
//
//	func init() { sdk.Register(echo{}) }
//	func main()  {}
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o echo.wasm .
//	go run github.com/llm-proxy/llm-proxy/sdk/cmd/llmproxy-pack -manifest manifest.json echo.wasm
//
// The SDK owns the ABI (sdk/ABI.md): it exports llmproxy_handle, reads the
// request and the provider config through host functions into buffers it
// owns, recovers panics, and turns errors into OpenAI-shaped failures.
//
// # Testing
//
// The same plugin code runs natively: sdk/plugintest provides a Host backed
// by net/http, so `go test` exercises a plugin without building wasm.
//
// # Performance
//
// Code in a Go wasip1 guest runs roughly an order of magnitude slower than
// native code and reflection is slower still. Keep per-request and per-chunk
// work free of encoding/json: pass the unified request and upstream events
// through unchanged where the formats agree (see Call.ForwardSSE), and scan
// bytes where a field must be found.
package sdk

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// Plugin is implemented by a provider plugin. Each method handles one call;
// it reads the request with Call.Request and answers with the Call's Emit
// methods or Fail. Returning an error that was not already reported fails
// the request (see Call.Fail for how errors map to HTTP statuses).
type Plugin interface {
	// Chat answers an OpenAI chat completion request without streaming:
	// exactly one EmitBody with a chat.completion object.
	Chat(c *Call) error
	// ChatStream answers a streaming chat completion request: EmitChunk per
	// chat.completion.chunk object, the last with usage when known.
	ChatStream(c *Call) error
	// Embeddings answers an OpenAI embeddings request with one EmitBody.
	Embeddings(c *Call) error
	// Models lists what the upstream offers, as an OpenAI model list body.
	Models(c *Call) error
}

// Unimplemented answers every operation with ErrUnsupported. Embed it so a
// plugin only writes the methods it supports.
type Unimplemented struct{}

func (Unimplemented) Chat(*Call) error       { return ErrUnsupported }
func (Unimplemented) ChatStream(*Call) error { return ErrUnsupported }
func (Unimplemented) Embeddings(*Call) error { return ErrUnsupported }
func (Unimplemented) Models(*Call) error     { return ErrUnsupported }

var (
	// ErrUnsupported is returned by operations a plugin does not implement.
	ErrUnsupported = errors.New("operation not supported by this provider")
	// ErrClientGone is returned by Emit methods once the client disconnected.
	ErrClientGone = errors.New("client gone")
)

// StatusError is a host function's negative status, as an error.
type StatusError struct {
	Op     string
	Status abi.Status
}

func (e *StatusError) Error() string { return e.Op + ": " + e.Status.String() }

func statusErr(op string, s int32) error {
	if abi.Status(s) == abi.StatusClientGone {
		return ErrClientGone
	}
	return &StatusError{Op: op, Status: abi.Status(s)}
}

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

// Serve runs one operation of p against host h and returns the value of
// llmproxy_handle: 0 when the call ended normally (with a response or a
// reported failure), 1 when the plugin panicked. The wasip1 export calls it
// with the real host; plugintest calls it with a native one.
func Serve(h Host, p Plugin, op abi.Op) (ret int32) {
	c := &Call{host: h, op: op}
	defer func() {
		if r := recover(); r != nil {
			msg := fmt.Sprintf("plugin panic: %v", r)
			c.Log(abi.LogError, msg+"\n"+string(debug.Stack()))
			if !c.finished {
				_ = c.Fail(502, []byte(msg))
			}
			ret = 1
		}
	}()
	var err error
	switch op {
	case abi.OpChat:
		err = p.Chat(c)
	case abi.OpChatStream:
		err = p.ChatStream(c)
	case abi.OpEmbeddings:
		err = p.Embeddings(c)
	case abi.OpModels:
		err = p.Models(c)
	default:
		err = &HTTPError{Status: 400, Message: "unknown operation"}
	}
	c.closeAll()
	if err != nil && !c.finished {
		c.failWith(err)
	}
	return 0
}
