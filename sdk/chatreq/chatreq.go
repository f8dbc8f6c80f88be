// Package chatreq reads the unified chat request (OpenAI Chat Completions
// JSON) for a plugin that translates it into another provider's format.
//
// Reading the request is the same work for every such plugin: walk
// messages, tell the roles apart, take content as a string or as an array
// of parts, check tool calls and tool messages, and refuse malformed input
// with the 400 an OpenAI client expects. Writing the provider's request is
// not: so the package reads and the plugin writes. A plugin implements
// Visitor, and Walker.Walk calls it with each piece of content, in order,
// already checked; the plugin appends what its provider wants and refuses,
// with its own error, what its provider cannot take.
//
//	var walker chatreq.Walker // one per instance: it keeps a tape between calls
//
//	func buildRequest(req rawjson.Value, parse chatreq.Parser) ([]byte, error) {
//		w := writer{...} // implements chatreq.Visitor
//		if err := walker.Walk(req.Get("messages"), parse, &w); err != nil {
//			return nil, err // an *sdk.HTTPError with status 400
//		}
//		...
//	}
//
// Values come as rawjson.Values, raw bytes of the request: a text is the
// string literal as the client sent it, quotes and escapes included, ready
// to be copied into the output. Nothing is decoded that the walk does not
// need to look at, and there is no reflection, so the walk costs a guest a
// few steps per message.
//
// The package also holds the small helpers both translations need around
// that walk: BadRequest (the OpenAI-shaped 400), UnsupportedPart, Blank,
// ParseDataURL and HasPrefixFold for content parts, and ParseHTTPDate and
// Created for the created field of the answer.
package chatreq

import (
	"bytes"
	"fmt"

	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// Role is the role of a message whose content is handed to a Visitor.
// Tool messages are not among them: their content goes to
// Visitor.ToolResult.
type Role uint8

const (
	// System is a system or a developer message: developer is what OpenAI
	// calls system instructions for its newer models, and other providers
	// have one kind of instructions.
	System Role = iota + 1
	User
	Assistant
)

// String is the OpenAI name of the role.
func (r Role) String() string {
	switch r {
	case System:
		return "system"
	case User:
		return "user"
	case Assistant:
		return "assistant"
	}
	return "unknown"
}

// ToolCall is one element of an assistant message's tool_calls, checked.
type ToolCall struct {
	// ID and Name are string literals (id and function.name), as they came.
	ID, Name rawjson.Value
	// Arguments is function.arguments decoded: the text of a JSON object,
	// checked, without surrounding spaces; {} when the call has none. It
	// points into the request, or into a new slice when the string had
	// escapes; do not modify it.
	Arguments []byte
}

// Visitor receives the content of a request's messages, in order. i is
// the index of the message in messages, j that of a part in its content
// array or of a call in its tool_calls. An error stops the walk and is
// returned by Walk as it is: return an *sdk.HTTPError (BadRequest) to
// refuse the request.
type Visitor interface {
	// Text is a piece of text of a system, user or assistant message: a
	// string content, a text part, or a refusal part of an assistant
	// message (a refusal is text the assistant said). text is a string
	// literal, which may be empty or blank (see Blank).
	Text(i int, role Role, text rawjson.Value) error
	// Part is a part of an array content that is not text: typ is its
	// type decoded (nil when it has none), part the whole object, or
	// whatever else the element is. It is the plugin that knows which
	// parts its provider takes; UnsupportedPart is the usual refusal.
	// A refusal part outside an assistant message, or whose refusal is
	// not a string, comes here too.
	Part(i, j int, role Role, typ []byte, part rawjson.Value) error
	// ToolCall is a tool call of an assistant message, after the
	// message's content.
	ToolCall(i, j int, call ToolCall) error
	// ToolResult is a tool message: id is its tool_call_id, a string
	// literal; content is its content as it came (a string, an array of
	// parts, null, or absent), which providers take in such different
	// forms that reading it is left to the plugin.
	ToolResult(i int, id, content rawjson.Value) error
}

// Parser indexes a JSON document, reusing tape: sdk.Call.ParseJSON in a
// plugin (the host builds the tape), rawjson.Parse in native tests.
type Parser func(data []byte, tape []uint32) (rawjson.Doc, error)

// Walker walks the messages of chat requests. Its zero value is ready;
// keep one for the life of an instance, as the buffers of a plugin, so the
// tape it indexes tool call arguments into is reused. A Walker is not safe
// for concurrent use.
type Walker struct {
	tape []uint32
}

// Walk reads messages, the messages member of a chat request, and hands
// its content to v. It returns the first error, either a 400 built by
// BadRequest for a request that is not a well-formed chat request or the
// Visitor's own. parse indexes the arguments of tool calls, to check that
// they are JSON objects.
//
// The members of a message are found by their names as the client wrote
// them, escapes not decoded, and one that appears twice counts with its
// last value; roles and part types are compared decoded.
func (w *Walker) Walk(messages rawjson.Value, parse Parser, v Visitor) error {
	if messages.Kind() != rawjson.Array {
		return BadRequest("messages", "messages must be an array of message objects")
	}
	i := 0
	for e := messages.Elements(); e.Next(); i++ {
		if err := w.message(e.Value(), i, parse, v); err != nil {
			return err
		}
	}
	return nil
}

// tool marks a tool message inside the walk; Visitors never see it.
const tool Role = 0xff

// roleOf maps a role's decoded value to a Role, 0 when it is none of
// OpenAI's. The length picks the candidate and rawjson.Equal confirms it:
// a switch on the string would compare byte by byte on wasm.
func roleOf(r []byte) Role {
	switch len(r) {
	case 4:
		if rawjson.Equal(r, "user") {
			return User
		}
		if rawjson.Equal(r, "tool") {
			return tool
		}
	case 6:
		if rawjson.Equal(r, "system") {
			return System
		}
	case 9:
		if rawjson.Equal(r, "assistant") {
			return Assistant
		}
		if rawjson.Equal(r, "developer") {
			return System
		}
	}
	return 0
}

// message reads messages[i].
func (w *Walker) message(m rawjson.Value, i int, parse Parser, v Visitor) error {
	if m.Kind() != rawjson.Object {
		return BadRequest(fmt.Sprintf("messages[%d]", i), "messages[%d] must be an object", i)
	}
	var role, content, toolCalls, toolCallID rawjson.Value
	for f := m.Members(); f.Next(); {
		switch k := f.Key(); len(k) {
		case 4:
			if rawjson.Equal(k, "role") {
				role = f.Value()
			}
		case 7:
			if rawjson.Equal(k, "content") {
				content = f.Value()
			}
		case 10:
			if rawjson.Equal(k, "tool_calls") {
				toolCalls = f.Value()
			}
		case 12:
			if rawjson.Equal(k, "tool_call_id") {
				toolCallID = f.Value()
			}
		}
	}
	r, _ := role.Str()
	switch rl := roleOf(r); rl {
	case System, User:
		return readContent(content, i, rl, v)
	case Assistant:
		if err := readContent(content, i, rl, v); err != nil {
			return err
		}
		return w.toolCalls(toolCalls, i, parse, v)
	case tool:
		if toolCallID.Kind() != rawjson.String {
			return BadRequest(fmt.Sprintf("messages[%d].tool_call_id", i), "messages[%d].tool_call_id must be a string", i)
		}
		return v.ToolResult(i, toolCallID, content)
	}
	return BadRequest(fmt.Sprintf("messages[%d].role", i),
		"messages[%d].role %s is not supported; use system, developer, user, assistant or tool", i, role.Raw())
}

// readContent reads the content of a system, user or assistant message: a
// string, nothing, or an array of parts.
func readContent(content rawjson.Value, i int, role Role, v Visitor) error {
	switch content.Kind() {
	case rawjson.String:
		return v.Text(i, role, content)
	case rawjson.Null, rawjson.Invalid:
		return nil
	case rawjson.Array:
	default:
		param := fmt.Sprintf("messages[%d].content", i)
		return BadRequest(param, "%s must be a string or an array of content parts", param)
	}
	j := 0
	for e := content.Elements(); e.Next(); j++ {
		p := e.Value()
		typ, _ := p.Get("type").Str()
		var err error
		switch {
		case len(typ) == 4 && rawjson.Equal(typ, "text"):
			t := p.Get("text")
			if t.Kind() != rawjson.String {
				param := fmt.Sprintf("messages[%d].content[%d]", i, j)
				return BadRequest(param, "%s.text must be a string", param)
			}
			err = v.Text(i, role, t)
		case role == Assistant && len(typ) == 7 && rawjson.Equal(typ, "refusal") && p.Get("refusal").Kind() == rawjson.String:
			err = v.Text(i, role, p.Get("refusal"))
		default:
			err = v.Part(i, j, role, typ, p)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// toolCalls reads the tool_calls of messages[i], an assistant message.
func (w *Walker) toolCalls(calls rawjson.Value, i int, parse Parser, v Visitor) error {
	switch calls.Kind() {
	case rawjson.Null, rawjson.Invalid:
		return nil
	case rawjson.Array:
	default:
		return BadRequest(fmt.Sprintf("messages[%d].tool_calls", i), "tool_calls must be an array")
	}
	j := 0
	for e := calls.Elements(); e.Next(); j++ {
		call := e.Value()
		id := call.Get("id")
		fn := call.Get("function")
		name := fn.Get("name")
		if id.Kind() != rawjson.String || name.Kind() != rawjson.String {
			param := fmt.Sprintf("messages[%d].tool_calls[%d]", i, j)
			return BadRequest(param, "%s needs a string id and function.name", param)
		}
		argsV := fn.Get("arguments")
		args, ok := argsV.Str()
		if !ok && argsV.Exists() && !argsV.IsNull() {
			param := fmt.Sprintf("messages[%d].tool_calls[%d]", i, j)
			return BadRequest(param, "%s.function.arguments must be a string", param)
		}
		// Arguments are a string holding JSON; providers want the object
		// itself, so it must be one. Clients send "" for a call without
		// arguments, which is the empty object.
		args = bytes.TrimSpace(args)
		if len(args) == 0 {
			args = emptyObject
		} else {
			doc, err := parse(args, w.tape)
			w.tape = doc.Tape
			if err != nil || doc.Root().Kind() != rawjson.Object {
				param := fmt.Sprintf("messages[%d].tool_calls[%d]", i, j)
				return BadRequest(param, "%s.function.arguments must be a JSON object", param)
			}
		}
		if err := v.ToolCall(i, j, ToolCall{ID: id, Name: name, Arguments: args}); err != nil {
			return err
		}
	}
	return nil
}

var emptyObject = []byte("{}")
