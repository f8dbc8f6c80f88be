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
//	var reader chatreq.Reader // one per instance, reused from call to call
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
// few steps per message. It is an iterator, kept in the Reader, rather
// than callbacks through an interface, which would move the plugin's
// writer to the heap: the plugin's own functions are called directly.
// Reading allocates nothing but the decoded copy of tool call arguments
// that hold escapes, provided the request's Doc is not a local variable:
// the compiler cannot tell that the values the iterator keeps do not
// outlive the call, and moves such a Doc to the heap. Keep it in a
// package variable, as its tape.
//
// The package also holds the small helpers both translations need around
// that walk: BadRequest (the OpenAI-shaped 400), UnsupportedPart, Blank,
// ParseDataURL and HasPrefixFold for content parts, and ParseHTTPDate and
// Created for the created field of the answer.
package chatreq

import (
	"bytes"

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
// keep one for the life of an instance, as the buffers of a plugin: it
// holds the iterator Messages returns, and the tape tool call arguments
// are indexed into, both reused from one request to the next. A Reader
// reads one request at a time and is not safe for concurrent use.
type Reader struct {
	m Messages
}

// Messages returns an iterator over messages, the messages member of a
// chat request, valid until the next call. parse indexes the arguments of
// tool calls, to check that they are JSON objects.
//
// The members of a message are found by their names as the client wrote
// them, escapes not decoded, and one that appears twice counts with its
// last value; roles and part types are compared decoded.
func (r *Reader) Messages(messages rawjson.Value, parse Parser) *Messages {
	m := &r.m
	m.parse, m.msgs, m.phase, m.i, m.err = parse, messages.Elements(), phaseMessage, -1, nil
	if messages.Kind() != rawjson.Array {
		m.err = BadRequest("messages", "messages must be an array of message objects")
	}
	return m
}

// Messages iterates over the pieces of a request's messages, in order:
//
//	for m.Next() {
//		m.Kind(), m.Message(), m.Role(), m.Value(), ...
//	}
//	err := m.Err()
//
// Next stops at the first malformed message, which Err then refuses. The
// accessors describe the current piece; each says which kinds it is for.
type Messages struct {
	tape  []uint32 // kept from one request to the next
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
//
// Reading a message is written out here, without a call on the way of a
// well-formed one, and keys and roles are compared as at most 6 bytes at a
// time: in a wasm guest a call saves every live value to memory and back,
// and a comparison of more than 6 bytes is a call to a byte loop, while
// shorter ones are expanded inline.
func (m *Messages) Next() bool {
	for m.err == nil {
		switch m.phase {
		case phaseMessage:
			if !m.msgs.Next() {
				return false
			}
			m.i++
			v := m.msgs.Value()
			if v.Kind() != rawjson.Object {
				return m.fail(notObject, nil)
			}
			var role, content, toolCalls, toolCallID rawjson.Value
			for f := v.Members(); f.Next(); {
				switch k := f.Key(); len(k) {
				case 4:
					if string(k) == "role" {
						role = f.Value()
					}
				case 7:
					if string(k[:6]) == "conten" && k[6] == 't' {
						content = f.Value()
					}
				case 10:
					if string(k[:6]) == "tool_c" && string(k[6:]) == "alls" {
						toolCalls = f.Value()
					}
				case 12:
					if string(k[:6]) == "tool_c" && string(k[6:]) == "all_id" {
						toolCallID = f.Value()
					}
				}
			}
			// The role is compared in place when it has no escapes, as
			// clients write it.
			rl := Role(0)
			if role.Kind() == rawjson.String {
				r := role.Raw()
				r = r[1 : len(r)-1]
				if role.Escaped() {
					r, _ = role.Str()
				}
				switch len(r) {
				case 4:
					if string(r) == "user" {
						rl = User
					} else if string(r) == "tool" {
						rl = Tool
					}
				case 6:
					if string(r) == "system" {
						rl = System
					}
				case 9:
					if string(r[:5]) == "assis" && string(r[5:]) == "tant" {
						rl = Assistant
					} else if string(r[:5]) == "devel" && string(r[5:]) == "oper" {
						rl = System
					}
				}
			}
			m.role, m.j = rl, -1
			switch rl {
			case 0:
				return m.fail(badRole, role.Raw())
			case Tool:
				if toolCallID.Kind() != rawjson.String {
					return m.fail(badToolCallID, nil)
				}
				m.kind, m.id, m.val = ToolResult, toolCallID, content
				return true
			}
			// After the content, the tool calls of an assistant message.
			m.calls, m.phase = toolCalls, phaseMessage
			if rl == Assistant {
				m.phase = phaseCalls
			}
			switch content.Kind() {
			case rawjson.String:
				m.kind, m.val = Text, content
				return true
			case rawjson.Null, rawjson.Invalid:
			case rawjson.Array:
				m.inner = content.Elements()
				m.phase = phaseParts
			default:
				return m.fail(badContent, nil)
			}
		case phaseParts:
			if !m.inner.Next() {
				m.phase = phaseMessage
				if m.role == Assistant {
					m.phase = phaseCalls
				}
				continue
			}
			m.j++
			if m.part(m.inner.Value()) {
				return true
			}
		case phaseCalls:
			m.phase = phaseMessage
			m.startCalls()
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

// part makes p, part m.j of the current content, the current piece, and
// reports whether it is well-formed.
func (m *Messages) part(p rawjson.Value) bool {
	typ, _ := p.Get("type").Str()
	m.typ = typ
	switch {
	case string(typ) == "text":
		t := p.Get("text")
		if t.Kind() != rawjson.String {
			return m.fail(badText, nil)
		}
		m.kind, m.val = Text, t
	case m.role == Assistant && string(typ) == "refusal" && p.Get("refusal").Kind() == rawjson.String:
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
		m.fail(badToolCalls, nil)
	}
}

// call makes c, call m.j of the current tool_calls, the current piece, and
// reports whether it is well-formed.
func (m *Messages) call(c rawjson.Value) bool {
	id := c.Get("id")
	fn := c.Get("function")
	name := fn.Get("name")
	if id.Kind() != rawjson.String || name.Kind() != rawjson.String {
		return m.fail(badCall, nil)
	}
	argsV := fn.Get("arguments")
	args, ok := argsV.Str()
	if !ok && argsV.Exists() && !argsV.IsNull() {
		return m.fail(badArgumentsType, nil)
	}
	// Arguments are a string holding JSON; providers want the object
	// itself, so it must be one. Clients send "" for a call without
	// arguments, which is the empty object.
	args = bytes.TrimSpace(args)
	if len(args) == 0 {
		args = emptyObject
	} else {
		doc, err := m.parse(args, m.tape)
		m.tape = doc.Tape
		if err != nil || doc.Root().Kind() != rawjson.Object {
			return m.fail(badArguments, nil)
		}
	}
	m.kind, m.id, m.name, m.args = ToolCall, id, name, args
	return true
}

var emptyObject = []byte("{}")

// failure is what is wrong with a message.
type failure uint8

const (
	notObject        failure = iota // messages[i] is not an object
	badRole                         // its role is none of OpenAI's
	badToolCallID                   // a tool message without a string tool_call_id
	badContent                      // content neither a string, null nor an array
	badText                         // part j is a text part without a string text
	badToolCalls                    // tool_calls is not an array
	badCall                         // call j lacks a string id or function.name
	badArgumentsType                // its arguments are not a string
	badArguments                    // its arguments are not a JSON object
)

// fail stops the iteration with the 400 for what is wrong at messages[m.i],
// in its part or call m.j; role is the offending role. The errors are
// built here, out of the functions that read well-formed messages: their
// formatting would weigh on every call of those in a wasm guest.
func (m *Messages) fail(what failure, role []byte) bool {
	at := Elem("messages", m.i)
	switch what {
	case notObject:
		m.err = BadRequest(at, at+" must be an object")
	case badRole:
		m.err = BadRequest(at+".role",
			at+".role "+string(role)+" is not supported; use system, developer, user, assistant or tool")
	case badToolCallID:
		m.err = BadRequest(at+".tool_call_id", at+".tool_call_id must be a string")
	case badContent:
		param := at + ".content"
		m.err = BadRequest(param, param+" must be a string or an array of content parts")
	case badText:
		param := Elem(at+".content", m.j)
		m.err = BadRequest(param, param+".text must be a string")
	case badToolCalls:
		m.err = BadRequest(at+".tool_calls", "tool_calls must be an array")
	case badCall:
		param := Elem(at+".tool_calls", m.j)
		m.err = BadRequest(param, param+" needs a string id and function.name")
	case badArgumentsType:
		param := Elem(at+".tool_calls", m.j)
		m.err = BadRequest(param, param+".function.arguments must be a string")
	case badArguments:
		param := Elem(at+".tool_calls", m.j)
		m.err = BadRequest(param, param+".function.arguments must be a JSON object")
	}
	return false
}
