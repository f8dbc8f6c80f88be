// Package abi holds the contract between the LLM Proxy host and its provider
// plugins: the import module name, the numeric codes that cross the boundary,
// the plugin manifest, and the few byte formats both sides must agree on.
//
// It is a leaf package: the host, the Go SDK and the test kit import it, and it
// imports nothing but the standard library. sdk/ABI.md is the prose
// specification; every constant here is described there with an example.
package abi

// Version of the ABI implemented by this package. The major version is part of
// the import module name, so a host can serve several majors side by side; a
// minor version only adds optional behaviour and is declared in the manifest.
const (
	Major = 1
	Minor = 2

	// ImportModule is the wasm import module that carries every host function
	// of ABI major 1.
	ImportModule = "llmproxy_v1"

	// ExportHandle is the guest function the host calls once per request:
	// (op i32) -> i32. It returns 0 when the guest finished normally (it has
	// emitted a response or called fail) and non-zero otherwise.
	ExportHandle = "llmproxy_handle"

	// ExportInitialize is the WASI reactor initialiser the host runs once per
	// instance, before the first call.
	ExportInitialize = "_initialize"

	// ManifestSection is the name of the wasm custom section holding the
	// plugin manifest as JSON. The host reads it before compiling the module.
	ManifestSection = "llmproxy.manifest"
)

// Op says which operation a call to ExportHandle performs.
type Op int32

const (
	// OpChat: the unified request is an OpenAI chat completion request with
	// stream false; the guest emits one KindBody (a chat.completion object).
	OpChat Op = 1
	// OpChatStream: the unified request has "stream":true and
	// "stream_options":{"include_usage":true}; the guest emits KindChunk
	// events (chat.completion.chunk objects), the last carrying usage.
	OpChatStream Op = 2
	// OpEmbeddings: an OpenAI embeddings request; the guest emits one KindBody.
	OpEmbeddings Op = 3
	// OpModels: the request is empty; the guest emits one KindBody holding an
	// OpenAI model list of what the upstream offers.
	OpModels Op = 4
)

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
	}
	return "unknown"
}

// Kind is what an emit call carries.
type Kind int32

const (
	// KindChunk is one streamed event: a complete JSON value that the host
	// frames as one SSE "data:" event and flushes at once.
	KindChunk Kind = 1
	// KindBody is a whole non-streamed JSON response body.
	KindBody Kind = 2
	// KindUsage reports token usage as an OpenAI usage object
	// ({"prompt_tokens":..,"completion_tokens":..,...}) without sending
	// anything to the client. Usage found in chunks and bodies is read by the
	// host as well; the last report wins.
	KindUsage Kind = 3
)

// Status is the i32 result of a host function. Non-negative values are
// results (a length, a handle, a count of bytes); negative values are the
// errors below. None of them is a trap: the guest decides what to do.
type Status int32

const (
	StatusOK Status = 0
	// StatusInvalid: an argument was wrong: a pointer or length outside guest
	// memory, an unknown handle, an unknown kind, a malformed request head.
	StatusInvalid Status = -1
	// StatusDenied: the destination is not granted to this provider, the
	// scheme is not allowed, or the address is private and the provider may
	// not reach private networks.
	StatusDenied Status = -2
	// StatusTimeout: the upstream did not answer in time, or the call's
	// deadline passed.
	StatusTimeout Status = -3
	// StatusUnreachable: DNS, connect or TLS failed.
	StatusUnreachable Status = -4
	// StatusLimit: a limit of the call was reached (open handles, upstream
	// body bytes, emitted bytes).
	StatusLimit Status = -5
	// StatusClientGone: the client disconnected; the guest should stop.
	StatusClientGone Status = -6
	// StatusIO: the upstream connection failed while reading the body.
	StatusIO Status = -7
	// StatusNotFound: the asked-for header does not exist.
	StatusNotFound Status = -8
	// StatusMalformed: the bytes given to json_tape are not one valid JSON
	// value (ABI 1.1), or what fetch_image downloaded is not an image (1.2).
	StatusMalformed Status = -9
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
		return "malformed JSON"
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

// Host function names in ImportModule. Signatures use i32 only; pointers are
// offsets into the guest's exported "memory".
const (
	FnRequestRead = "request_read" // (buf, cap) -> len
	FnConfigRead  = "config_read"  // (buf, cap) -> len
	FnHTTPSend    = "http_send"    // (head, head_len, body, body_len) -> handle
	FnHTTPStatus  = "http_status"  // (handle) -> status code
	FnHTTPHeader  = "http_header"  // (handle, name, name_len, buf, cap) -> len
	FnHTTPRead    = "http_read"    // (handle, buf, cap) -> n
	// FnHTTPReadEvent returns the data of the next Server-Sent Event of a
	// response body, parsed by the host: (handle, buf, cap) -> len.
	FnHTTPReadEvent = "http_read_event"
	FnHTTPClose     = "http_close" // (handle) -> status
	FnEmit          = "emit"       // (kind, buf, len) -> status
	FnFail          = "fail"       // (http_status, buf, len) -> status
	FnLog           = "log"        // (level, buf, len) -> status
	// FnJSONTape indexes a JSON document of guest memory natively and
	// writes its tape (sdk/rawjson): (buf, len, tape, cap) -> entries.
	// Added in ABI 1.1.
	FnJSONTape = "json_tape"
	// FnFetchImage downloads an image a client named by http(s) URL, for
	// providers that want image bytes inline: (url, url_len, buf, cap) ->
	// len of "<media type>\n<base64 data>". Added in ABI 1.2.
	FnFetchImage = "fetch_image"
)

// HostFunctions lists every function of ImportModule with its number of i32
// parameters. Every one returns a single i32.
var HostFunctions = map[string]int{
	FnRequestRead:   2,
	FnConfigRead:    2,
	FnHTTPSend:      4,
	FnHTTPStatus:    1,
	FnHTTPHeader:    5,
	FnHTTPRead:      3,
	FnHTTPReadEvent: 3,
	FnHTTPClose:     1,
	FnEmit:          3,
	FnFail:          3,
	FnLog:           3,
	FnJSONTape:      4,
	FnFetchImage:    4,
}
