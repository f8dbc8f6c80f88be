package sdk

import "github.com/llm-proxy/llm-proxy/sdk/abi"

// Host is the set of host functions of ABI v1, one method each, with the
// ABI's status conventions (a negative result is an abi.Status). In a wasm
// build it is backed by the real imports; sdk/plugintest backs it natively.
// Plugin code uses Call, not Host.
type Host interface {
	RequestRead(buf []byte) int32
	ConfigRead(buf []byte) int32
	HTTPSend(head, body []byte) int32
	HTTPStatus(handle int32) int32
	HTTPHeader(handle int32, name, buf []byte) int32
	HTTPRead(handle int32, buf []byte) int32
	HTTPReadEvent(handle int32, buf []byte) int32
	HTTPClose(handle int32) int32
	Emit(kind abi.Kind, data []byte) int32
	Fail(httpStatus int32, body []byte) int32
	Log(level int32, msg []byte) int32
	// JSONTape indexes the JSON document data (ABI 1.1, json_tape): it
	// returns the number of tape entries and writes them into
	// tape[:cap(tape)] only when all of them fit (rawjson.EntryWords words
	// each).
	JSONTape(data []byte, tape []uint32) int32
	// FetchImage downloads the image at url (ABI 1.2, fetch_image): it
	// returns the length of "<media type>\n<base64 data>" and writes it into
	// buf[:cap(buf)] only when it fits.
	FetchImage(url, buf []byte) int32
}
