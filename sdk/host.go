package sdk

import "github.com/llm-proxy/llm-proxy/sdk/abi"

// Host is the set of host functions of ABI 2 (abi.HostFuncs), one method
// each, with the ABI's conventions: a negative result is an abi.Status, and
// a function that fills a buffer returns the full length and writes into
// buf[:cap(buf)] only when it fits. In a wasm build it is backed by the real
// imports; sdk/plugintest backs it natively. Plugin code uses Stream, not
// Host.
type Host interface {
	RequestRead(stream int32, buf []byte) int32
	ConfigRead(stream int32, buf []byte) int32
	HTTPSend(stream int32, head, body []byte) int32
	HTTPBody(handle int32, mode abi.BodyMode) int32
	HTTPHeader(handle int32, name, buf []byte) int32
	HTTPClose(handle int32) int32
	DataRead(buf []byte) int32
	Emit(stream int32, kind abi.Kind, data []byte) int32
	Fail(stream int32, httpStatus int32, body []byte) int32
	Finish(stream int32) int32
	FetchImage(stream int32, url []byte) int32
	SetTimer(stream int32, delayMS int32) int32
	// JSONTape indexes the JSON document data: it returns the number of
	// tape entries and writes them into tape[:cap(tape)] only when all of
	// them fit (rawjson.EntryWords words each).
	JSONTape(data []byte, tape []uint32) int32
	Log(level int32, msg []byte) int32
}
