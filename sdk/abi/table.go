package abi

// This file is the one table of the ABI's functions. The host registers its
// host functions and checks a module's exports from it, the Go SDK's import
// declarations are generated from it (sdk/internal/genimports), and a test
// holds the tables of sdk/ABI.md to it. Adding a function is one entry here
// plus its implementations; everything else follows or fails a test.

// ParamKind is what an i32 parameter carries.
type ParamKind uint8

const (
	// Int is a signed value: a stream id, a handle, an op, a status, a
	// kind, a mode, a level, a delay.
	Int ParamKind = iota
	// Ptr is an address in the guest's exported memory (unsigned).
	Ptr
	// Len is a byte count in the guest's memory (unsigned): the length of
	// the data at the preceding Ptr, or the capacity of a buffer.
	Len
)

// Param is one parameter of a function in the table. Every parameter and
// every result of every function of the ABI is an i32.
type Param struct {
	Name string
	Kind ParamKind
}

// Func is one function of the ABI: a host function the guest imports from
// ImportModule, or a callback the guest exports.
type Func struct {
	Name   string
	Params []Param
	// Result says what a non-negative result means; a negative one is a
	// Status. For exports: 0 means the guest is fine; anything else means
	// its state is broken and the host discards the instance.
	Result string
	// Since is the "major.minor" that added the function.
	Since string
	// Required marks the exports a module must have to load.
	Required bool
	// Doc is one line for the reference tables.
	Doc string
}

// Arity is the number of i32 parameters.
func (f Func) Arity() int { return len(f.Params) }

func p(name string, k ParamKind) Param { return Param{name, k} }

// Host function names, as constants for the host and the SDK.
const (
	FnRequestRead = "request_read"
	FnConfigRead  = "config_read"
	FnHTTPSend    = "http_send"
	FnHTTPBody    = "http_body"
	FnHTTPHeader  = "http_header"
	FnHTTPClose   = "http_close"
	FnDataRead    = "data_read"
	FnEmit        = "emit"
	FnFail        = "fail"
	FnFinish      = "finish"
	FnFetchImage  = "fetch_image"
	FnSetTimer    = "set_timer"
	FnJSONTape    = "json_tape"
	FnLog         = "log"
)

// HostFuncs are the functions of ImportModule, in the order sdk/ABI.md
// documents them. A module may import any subset.
var HostFuncs = []Func{
	{Name: FnRequestRead, Params: []Param{p("stream", Int), p("buf", Ptr), p("cap", Len)},
		Result: "the full length of the unified request", Since: "2.0",
		Doc: "copies the stream's unified request into buf when it fits"},
	{Name: FnConfigRead, Params: []Param{p("stream", Int), p("buf", Ptr), p("cap", Len)},
		Result: "the full length of the provider config", Since: "2.0",
		Doc: "copies the stream's provider config JSON into buf when it fits"},
	{Name: FnHTTPSend, Params: []Param{p("stream", Int), p("head", Ptr), p("head_len", Len), p("body", Ptr), p("body_len", Len)},
		Result: "a handle", Since: "2.0",
		Doc: "dispatches an upstream request and returns at once; the answer comes as llmproxy_on_http_head/_data/_end"},
	{Name: FnHTTPBody, Params: []Param{p("handle", Int), p("mode", Int)},
		Result: "0", Since: "2.0",
		Doc: "during llmproxy_on_http_head: how the body is delivered (BodyMode)"},
	{Name: FnHTTPHeader, Params: []Param{p("handle", Int), p("name", Ptr), p("name_len", Len), p("buf", Ptr), p("cap", Len)},
		Result: "the full length of the header's first value", Since: "2.0",
		Doc: "copies a response header's first value into buf when it fits"},
	{Name: FnHTTPClose, Params: []Param{p("handle", Int)},
		Result: "0", Since: "2.0",
		Doc: "cancels an upstream request or an image fetch; no more callbacks for it"},
	{Name: FnDataRead, Params: []Param{p("buf", Ptr), p("cap", Len)},
		Result: "the full length of the callback's data", Since: "2.0",
		Doc: "during llmproxy_on_http_data or llmproxy_on_image: copies the data into buf when it fits"},
	{Name: FnEmit, Params: []Param{p("stream", Int), p("kind", Int), p("buf", Ptr), p("len", Len)},
		Result: "0", Since: "2.0",
		Doc: "queues a chunk, a body or a usage report for the client; never blocks"},
	{Name: FnFail, Params: []Param{p("stream", Int), p("http_status", Int), p("buf", Ptr), p("len", Len)},
		Result: "0", Since: "2.0",
		Doc: "ends the stream with an error (an OpenAI error object or plain text)"},
	{Name: FnFinish, Params: []Param{p("stream", Int)},
		Result: "0", Since: "2.0",
		Doc: "ends a chat_stream normally (the host sends [DONE])"},
	{Name: FnFetchImage, Params: []Param{p("stream", Int), p("url", Ptr), p("url_len", Len)},
		Result: "a handle", Since: "2.0",
		Doc: "starts downloading an image a client named by URL; the result comes as llmproxy_on_image"},
	{Name: FnSetTimer, Params: []Param{p("stream", Int), p("delay_ms", Int)},
		Result: "0", Since: "2.0",
		Doc: "calls llmproxy_on_timer for the stream after delay_ms (replacing its pending timer)"},
	{Name: FnJSONTape, Params: []Param{p("buf", Ptr), p("len", Len), p("tape", Ptr), p("cap", Len)},
		Result: "the number of tape entries", Since: "2.0",
		Doc: "indexes a JSON document natively and writes its tape (sdk/rawjson) when it fits"},
	{Name: FnLog, Params: []Param{p("level", Int), p("buf", Ptr), p("len", Len)},
		Result: "0", Since: "2.0",
		Doc: "writes a line to the host's log, rate-limited"},
}

// Export names: the guest's callbacks.
const (
	ExportOnStart    = "llmproxy_on_start"
	ExportOnHTTPHead = "llmproxy_on_http_head"
	ExportOnHTTPData = "llmproxy_on_http_data"
	ExportOnHTTPEnd  = "llmproxy_on_http_end"
	ExportOnImage    = "llmproxy_on_image"
	ExportOnTimer    = "llmproxy_on_timer"
	ExportOnDone     = "llmproxy_on_done"
)

// Exports are the guest's callbacks, each run to completion on the
// instance that holds the stream. Only the Required ones must exist; a host
// function whose answer arrives through a callback the module does not
// export returns StatusInvalid.
var Exports = []Func{
	{Name: ExportOnStart, Params: []Param{p("stream", Int), p("op", Int)}, Result: "0", Since: "2.0", Required: true,
		Doc: "a stream starts: read the request, then answer or dispatch upstream requests"},
	{Name: ExportOnHTTPHead, Params: []Param{p("stream", Int), p("handle", Int), p("status", Int)}, Result: "0", Since: "2.0",
		Doc: "an upstream response head arrived (HTTP status); choose the body mode with http_body"},
	{Name: ExportOnHTTPData, Params: []Param{p("stream", Int), p("handle", Int), p("len", Int)}, Result: "0", Since: "2.0",
		Doc: "an event, a chunk or the whole body arrived; read it with data_read"},
	{Name: ExportOnHTTPEnd, Params: []Param{p("stream", Int), p("handle", Int), p("status", Int)}, Result: "0", Since: "2.0",
		Doc: "the upstream request ended: 0 at the end of the body, a negative Status if it failed"},
	{Name: ExportOnImage, Params: []Param{p("stream", Int), p("handle", Int), p("result", Int)}, Result: "0", Since: "2.0",
		Doc: "an image fetch ended: the length of its data (read with data_read) or a negative Status"},
	{Name: ExportOnTimer, Params: []Param{p("stream", Int)}, Result: "0", Since: "2.0",
		Doc: "the stream's timer fired"},
	{Name: ExportOnDone, Params: []Param{p("stream", Int), p("reason", Int)}, Result: "0", Since: "2.0", Required: true,
		Doc: "the stream is over (0: the guest ended it; negative: the host did, with that Status); drop its state"},
}

// HostFunc returns the table entry of a host function.
func HostFunc(name string) (Func, bool) { return find(HostFuncs, name) }

// Export returns the table entry of an export.
func Export(name string) (Func, bool) { return find(Exports, name) }

func find(fs []Func, name string) (Func, bool) {
	for _, f := range fs {
		if f.Name == name {
			return f, true
		}
	}
	return Func{}, false
}
