// Package chatreq reads the unified chat request (OpenAI Chat Completions
// JSON) for a plugin that translates it into another provider's format.
//
// Reading the request is the same work for every such plugin: walk
// messages, tell the roles apart, take content as a string or as an array
// of parts, check tool calls and tool messages, and refuse malformed input
// with the 400 an OpenAI client expects. Writing the provider's request is
// not: so the package reads and the plugin writes. Reader.Messages returns
// an iterator over the pieces of the messages, in order, already checked;
// the plugin appends what its provider wants and refuses, with its own
// error, what its provider cannot take:
//
//	var reader chatreq.Reader // one per instance: it keeps a tape between calls
//
//	m := reader.Messages(req.Get("messages"), c.ParseJSON)
//	for m.Next() {
//		switch m.Kind() {
//		case chatreq.Text: // m.Role(), m.Value()
//		case chatreq.Part: // m.Type(), m.Value(): an image? a file?
//		case chatreq.ToolCall: // m.ID(), m.Name(), m.Arguments()
//		case chatreq.ToolResult: // m.ID(), m.Value()
//		}
//	}
//	if err := m.Err(); err != nil {
//		return err // an *sdk.HTTPError with status 400
//	}
//
// Values come as rawjson.Values, raw bytes of the request: a text is the
// string literal as the client sent it, quotes and escapes included, ready
// to be copied into the output. Nothing is decoded that the walk does not
// need to look at, and there is no reflection, so reading costs a guest a
// few steps per message. It is an iterator rather than callbacks through
// an interface, which would move the plugin's writer to the heap: the
// iterator lives on the caller's stack and the plugin's own functions are
// called directly. Reading allocates nothing but the decoded copy of tool
// call arguments that hold escapes, provided the request's Doc is not a
// local variable: the compiler cannot tell that the values the iterator
// keeps do not outlive the call, and moves such a Doc to the heap. Keep
// it in a package variable, as its tape.
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

// Role is the role of a message.
type Role uint8

const (
	// System is a system or a developer message: developer is what OpenAI
	// calls system instructions for its newer models, and other providers
	// have one kind of instructions.
	System Role = iota + 1
	User
	Assistant
	Tool
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
	case Tool:
		return "tool"
	}
	return "unknown"
}

// Kind is what the current piece of a Messages iterator is.
type Kind uint8

const (
	// Text is a piece of text of a system, user or assistant message: a
	// string content, a text part, or a refusal part of an assistant
	// message (a refusal is text the assistant said). Value is the string
	// literal, which may be empty or blank (see Blank).
	Text Kind = iota + 1
	// Part is a part of an array content that is not text: Type is its
	// type, Value the element (an object, or whatever else the client
	// sent). The plugin knows which parts its provider takes;
	// UnsupportedPart is the usual refusal. A refusal part outside an
	// assistant message, or whose refusal is not a string, is a Part too.
	Part
	// ToolCall is a tool call of an assistant message, after the message's
	// content: ID, Name and Arguments.
	ToolCall
	// ToolResult is a tool message: ID is its tool_call_id, Value its
	// content as it came (a string, an array of parts, null, or absent),
	// which providers take in such different forms that reading it is left
	// to the plugin.
	ToolResult
)

// Parser indexes a JSON document, reusing tape: sdk.Call.ParseJSON in a
// plugin (the host builds the tape), rawjson.Parse in native tests.
type Parser func(data []byte, tape []uint32) (rawjson.Doc, error)

// Reader reads the messages of chat requests. Its zero value is ready;
// keep one for the life of an instance, as the buffers of a plugin, so the
// tape it indexes tool call arguments into is reused. A Reader is not safe
// for concurrent use.
type Reader struct {
	tape []uint32
}

// Messages returns an iterator over messages, the messages member of a
// chat request. parse indexes the arguments of tool calls, to check that
// they are JSON objects.
//
// The members of a message are found by their names as the client wrote
// them, escapes not decoded, and one that appears twice counts with its
// last value; roles and part types are compared decoded.
func (r *Reader) Messages(messages rawjson.Value, parse Parser) Messages {
	if messages.Kind() != rawjson.Array {
		return Messages{err: BadRequest("messages", "messages must be an array of message objects")}
	}
	return Messages{r: r, parse: parse, msgs: messages.Elements(), i: -1}
}

// Messages iterates over the pieces of a request's messages, in order:
//
//	for m.Next() {
//		m.Kind(), m.Message(), m.Role(), m.Value(), ...
//	}
//	err := m.Err()
//
// Next stops at the first malformed message, which Err then refuses.
type Messages struct {
	r     *Reader
	parse Parser
	err   error
	msgs  rawjson.Elements // over messages
	inner rawjson.Elements // over the current content parts or tool calls
	phase uint8
	i, j  int
	role  Role
	calls rawjson.Value // tool_calls of the current message

	kind          Kind
	val, id, name rawjson.Value
	typ, args     []byte
}

// The phases of a Messages iterator: what Next looks at.
const (
	phaseMessage  = iota // the next message
	phaseParts           // the parts of the current message's content
	phaseCalls           // the current message's tool_calls, to check
	phaseCallList        // the calls in tool_calls
)

// Next moves to the next piece and reports whether there is one. It
// returns false at the end of the messages and at the first malformed
// one.
func (m *Messages) Next() bool {
	for m.err == nil {
		switch m.phase {
		case phaseMessage:
			if !m.msgs.Next() {
				return false
			}
			m.i++
			if m.message(m.msgs.Value()) {
				return true
			}
		case phaseParts:
			if !m.inner.Next() {
				m.phase = phaseCalls
				continue
			}
			m.j++
			if m.part(m.inner.Value()) {
				return true
			}
		case phaseCalls:
			m.phase = phaseMessage
			if m.role == Assistant {
				m.startCalls()
			}
		case phaseCallList:
			if !m.inner.Next() {
				m.phase = phaseMessage
				continue
			}
			m.j++
			if m.call(m.inner.Value()) {
				return true
			}
		}
	}
	return false
}

// Err is the error that stopped the iteration, nil at the end of
// well-formed messages. It is a 400 built by BadRequest.
func (m *Messages) Err() error { return m.err }

// Kind is what the current piece is.
func (m *Messages) Kind() Kind { return m.kind }

// Message is the index in messages of the current piece's message.
func (m *Messages) Message() int { return m.i }

// Index is the index of the current piece in its message's content array
// (a Text from a part, a Part) or tool_calls (a ToolCall); -1 for a Text
// that is a string content, and for a ToolResult.
func (m *Messages) Index() int { return m.j }

// Role is the role of the current piece's message: Assistant for a
// ToolCall, Tool for a ToolResult.
func (m *Messages) Role() Role { return m.role }

// Value is the string literal of a Text, the element of a Part, or the
// content of a ToolResult (absent when the message has none).
func (m *Messages) Value() rawjson.Value { return m.val }

// Type is the type of a Part, decoded; nil when it has none.
func (m *Messages) Type() []byte { return m.typ }

// ID is the id of a ToolCall or the tool_call_id of a ToolResult: a
// string literal, as it came.
func (m *Messages) ID() rawjson.Value { return m.id }

// Name is function.name of a ToolCall: a string literal, as it came.
func (m *Messages) Name() rawjson.Value { return m.name }

// Arguments is function.arguments of a ToolCall decoded: the text of a
// JSON object, checked, without surrounding spaces; {} when the call has
// none. It points into the request, or into a new slice when the string
// had escapes; do not modify it.
func (m *Messages) Arguments() []byte { return m.args }

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
			return Tool
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

// message starts messages[m.i], v, and reports whether it is a piece
// itself (a string content, a tool message).
func (m *Messages) message(v rawjson.Value) bool {
	i := m.i
	if v.Kind() != rawjson.Object {
		m.err = BadRequest(fmt.Sprintf("messages[%d]", i), "messages[%d] must be an object", i)
		return false
	}
	var role, content, toolCalls, toolCallID rawjson.Value
	for f := v.Members(); f.Next(); {
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
	m.role, m.j = roleOf(r), -1
	m.typ, m.id, m.name, m.args = nil, rawjson.Value{}, rawjson.Value{}, nil
	switch m.role {
	case 0:
		m.err = BadRequest(fmt.Sprintf("messages[%d].role", i),
			"messages[%d].role %s is not supported; use system, developer, user, assistant or tool", i, role.Raw())
		return false
	case Tool:
		if toolCallID.Kind() != rawjson.String {
			m.err = BadRequest(fmt.Sprintf("messages[%d].tool_call_id", i), "messages[%d].tool_call_id must be a string", i)
			return false
		}
		m.kind, m.id, m.val = ToolResult, toolCallID, content
		return true
	}
	m.calls = toolCalls
	switch content.Kind() {
	case rawjson.String:
		m.kind, m.val = Text, content
		m.phase = phaseCalls
		return true
	case rawjson.Null, rawjson.Invalid:
		m.phase = phaseCalls
	case rawjson.Array:
		m.inner = content.Elements()
		m.phase = phaseParts
	default:
		param := fmt.Sprintf("messages[%d].content", i)
		m.err = BadRequest(param, "%s must be a string or an array of content parts", param)
	}
	return false
}

// part makes p, part m.j of the current content, the current piece, and
// reports whether it is well-formed.
func (m *Messages) part(p rawjson.Value) bool {
	typ, _ := p.Get("type").Str()
	m.typ = typ
	switch {
	case len(typ) == 4 && rawjson.Equal(typ, "text"):
		t := p.Get("text")
		if t.Kind() != rawjson.String {
			param := fmt.Sprintf("messages[%d].content[%d]", m.i, m.j)
			m.err = BadRequest(param, "%s.text must be a string", param)
			return false
		}
		m.kind, m.val = Text, t
	case m.role == Assistant && len(typ) == 7 && rawjson.Equal(typ, "refusal") && p.Get("refusal").Kind() == rawjson.String:
		m.kind, m.val = Text, p.Get("refusal")
	default:
		m.kind, m.val = Part, p
	}
	return true
}

// startCalls checks the tool_calls of the current message, an assistant
// message, once its content is read.
func (m *Messages) startCalls() {
	switch m.calls.Kind() {
	case rawjson.Null, rawjson.Invalid:
	case rawjson.Array:
		m.inner = m.calls.Elements()
		m.j = -1
		m.phase = phaseCallList
	default:
		m.err = BadRequest(fmt.Sprintf("messages[%d].tool_calls", m.i), "tool_calls must be an array")
	}
}

// call makes c, call m.j of the current tool_calls, the current piece, and
// reports whether it is well-formed.
func (m *Messages) call(c rawjson.Value) bool {
	id := c.Get("id")
	fn := c.Get("function")
	name := fn.Get("name")
	if id.Kind() != rawjson.String || name.Kind() != rawjson.String {
		param := fmt.Sprintf("messages[%d].tool_calls[%d]", m.i, m.j)
		m.err = BadRequest(param, "%s needs a string id and function.name", param)
		return false
	}
	argsV := fn.Get("arguments")
	args, ok := argsV.Str()
	if !ok && argsV.Exists() && !argsV.IsNull() {
		param := fmt.Sprintf("messages[%d].tool_calls[%d]", m.i, m.j)
		m.err = BadRequest(param, "%s.function.arguments must be a string", param)
		return false
	}
	// Arguments are a string holding JSON; providers want the object
	// itself, so it must be one. Clients send "" for a call without
	// arguments, which is the empty object.
	args = bytes.TrimSpace(args)
	if len(args) == 0 {
		args = emptyObject
	} else {
		doc, err := m.parse(args, m.r.tape)
		m.r.tape = doc.Tape
		if err != nil || doc.Root().Kind() != rawjson.Object {
			param := fmt.Sprintf("messages[%d].tool_calls[%d]", m.i, m.j)
			m.err = BadRequest(param, "%s.function.arguments must be a JSON object", param)
			return false
		}
	}
	m.kind, m.typ, m.val, m.id, m.name, m.args = ToolCall, nil, rawjson.Value{}, id, name, args
	return true
}

var emptyObject = []byte("{}")
