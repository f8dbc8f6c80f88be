// Package abi holds the contract between the LLM Proxy host and its provider
// plugins: the import module name, the exports and host functions (one table
// each, which the host registers from, the SDK binds from and a test holds
// sdk/ABI.md to), the numeric codes that cross the boundary, the plugin
// manifest, and the few byte formats both sides must agree on.
//
// It is a leaf package: the host, the Go SDK and the test kit import it, and it
// imports nothing but the standard library. sdk/ABI.md is the prose
// specification; every constant here is described there with an example.
package abi

// Version of the ABI implemented by this package. The major version is part of
// the import module name, so a host can serve several majors side by side; a
// minor version only adds optional behaviour and is declared in the manifest.
const (
	Major = 2
	Minor = 1

	// ImportModule is the wasm import module that carries every host function
	// of ABI major 2.
	ImportModule = "llmproxy_v2"

	// ExportInitialize is the WASI reactor initialiser the host runs once per
	// instance, before the first callback.
	ExportInitialize = "_initialize"

	// ManifestSection is the name of the wasm custom section holding the
	// plugin manifest as JSON. The host reads it before compiling the module.
	ManifestSection = "llmproxy.manifest"
)

// Op says which operation a stream performs (the op argument of
// llmproxy_on_start).
type Op int32

const (
	// OpChat: the unified request is an OpenAI chat completion request with
	// stream false; the guest emits one KindBody (a chat.completion object).
	OpChat Op = 1
	// OpChatStream: the unified request has "stream":true and
	// "stream_options":{"include_usage":true}; the guest emits KindChunk
	// events (chat.completion.chunk objects), the last carrying usage, then
	// calls finish.
	OpChatStream Op = 2
	// OpEmbeddings: an OpenAI embeddings request; the guest emits one KindBody.
	OpEmbeddings Op = 3
	// OpModels: the request is empty; the guest emits one KindBody holding an
	// OpenAI model list of what the upstream offers.
	OpModels Op = 4
	// OpMessages: the request is an Anthropic Messages API request as the
	// client sent it (the model set to the provider's), not streamed; the
	// guest emits one KindBody holding a Messages API "message" object.
	// Only plugins with CapMessages are given it (ABI 2.1).
	OpMessages Op = 5
	// OpMessagesStream: the same request with "stream":true; the guest
	// emits one KindChunk per Messages API event (its JSON data, whose
	// "type" names the event), then calls finish.
	OpMessagesStream Op = 6
)

// Streams reports whether the operation answers with chunks and finish
// rather than one body.
func (o Op) Streams() bool { return o == OpChatStream || o == OpMessagesStream }

func (o Op) String() string {
	switch o {
	case OpChat:
		return "chat"
	case OpChatStream:
		return "chat_stream"
	case OpEmbeddings:
		return "embeddings"
	case OpModels:
		return "models"
	case OpMessages:
		return "messages"
	case OpMessagesStream:
		return "messages_stream"
	}
	return "unknown"
}

// Kind is what an emit call carries.
type Kind int32

const (
	// KindChunk is one streamed event: a complete JSON value that the host
	// frames as one SSE "data:" event and sends at once.
	KindChunk Kind = 1
	// KindBody is a whole non-streamed JSON response body. It ends the
	// stream.
	KindBody Kind = 2
	// KindUsage reports token usage as an OpenAI usage object
	// ({"prompt_tokens":..,"completion_tokens":..,...}) without sending
	// anything to the client. Usage found in chunks and bodies is read by the
	// host as well; the last report wins.
	KindUsage Kind = 3
)

// BodyMode says how the host delivers an upstream response body; the guest
// chooses it with http_body during llmproxy_on_http_head.
type BodyMode int32

const (
	// BodyWhole reads the whole body (within the stream's upstream byte
	// budget) and delivers it in one llmproxy_on_http_data. The default when
	// the guest does not call http_body.
	BodyWhole BodyMode = 1
	// BodyEvents parses the body as Server-Sent Events natively and delivers
	// the data of each event in its own llmproxy_on_http_data.
	BodyEvents BodyMode = 2
	// BodyChunks delivers the body's bytes as they arrive, one
	// llmproxy_on_http_data per read.
	BodyChunks BodyMode = 3
	// BodyRelay sends the body to the client unchanged with no guest call:
	// for a chat_stream, the data of each event becomes a chunk (an event
	// "[DONE]" ends the relay); for any other operation, the whole body
	// becomes the response body, which ends the stream.
	BodyRelay BodyMode = 4
)

func (m BodyMode) String() string {
	switch m {
	case BodyWhole:
		return "whole"
	case BodyEvents:
		return "events"
	case BodyChunks:
		return "chunks"
	case BodyRelay:
		return "relay"
	}
	return "unknown"
}

// Status is the i32 result of a host function, and the status argument of
// some callbacks. Non-negative values are results (a length, a handle, a
// count); negative values are the errors below. None of them is a trap: the
// guest decides what to do.
type Status int32

const (
	StatusOK Status = 0
	// StatusInvalid: an argument was wrong: a pointer or length outside guest
	// memory, an unknown stream or handle, an unknown kind or mode, a
	// malformed request head, or a call that is not allowed at this point.
	StatusInvalid Status = -1
	// StatusDenied: the destination is not granted to this provider, the
	// scheme is not allowed, or the address is private and the provider may
	// not reach private networks.
	StatusDenied Status = -2
	// StatusTimeout: the upstream did not answer in time, or the stream's
	// deadline passed.
	StatusTimeout Status = -3
	// StatusUnreachable: DNS, connect or TLS failed.
	StatusUnreachable Status = -4
	// StatusLimit: a limit of the stream was reached (open handles, upstream
	// body bytes, emitted bytes, bytes waiting for the client).
	StatusLimit Status = -5
	// StatusClientGone: the client disconnected or stopped reading; the
	// stream is over.
	StatusClientGone Status = -6
	// StatusIO: the upstream connection failed while reading the body.
	StatusIO Status = -7
	// StatusNotFound: the asked-for header does not exist.
	StatusNotFound Status = -8
	// StatusMalformed: the bytes given to json_tape are not one valid JSON
	// value, or what fetch_image downloaded is not an image.
	StatusMalformed Status = -9
	// StatusEnded: the stream has already ended (the guest finished or
	// failed it, or the host ended it); nothing more can be sent.
	StatusEnded Status = -10
	// StatusAborted: the host ended the stream because the guest left it
	// with nothing to wait for (no open upstream request, image fetch or
	// timer) and no answer: the client got 502 plugin_no_response.
	StatusAborted Status = -11
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusInvalid:
		return "invalid argument"
	case StatusDenied:
		return "destination denied"
	case StatusTimeout:
		return "timeout"
	case StatusUnreachable:
		return "upstream unreachable"
	case StatusLimit:
		return "limit reached"
	case StatusClientGone:
		return "client gone"
	case StatusIO:
		return "upstream i/o error"
	case StatusNotFound:
		return "not found"
	case StatusMalformed:
		return "malformed input"
	case StatusEnded:
		return "stream ended"
	case StatusAborted:
		return "stream aborted"
	}
	if s > 0 {
		return "ok"
	}
	return "unknown status"
}

// Log levels of the log host function; they match log/slog's levels.
const (
	LogDebug int32 = -4
	LogInfo  int32 = 0
	LogWarn  int32 = 4
	LogError int32 = 8
)
