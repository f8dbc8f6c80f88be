//go:build wasip1

package sdk

import (
	"unsafe"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

//go:generate go run ./internal/genabi zabi_wasip1.go

// guest is the instance's one Guest, made at the first callback.
var guest *Guest

func theGuest() *Guest {
	if guest == nil {
		if registered == nil {
			return nil
		}
		guest = NewGuest(wasmHost{}, registered)
	}
	return guest
}

// ptr returns the address of b's backing array, or nil for an empty slice.
// The host only touches the bytes in [ptr, ptr+len) (or +cap for reads)
// during the call, and Go's wasm heap does not move objects.
func ptr(b []byte) unsafe.Pointer {
	if cap(b) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(b))
}

// wasmHost is the Host backed by the imports of zabi_wasip1.go. Functions
// a plugin never calls are not linked, so a module imports only what it
// uses.
type wasmHost struct{}

func (wasmHost) RequestRead(s int32, buf []byte) int32 {
	return hostRequestRead(s, ptr(buf), uint32(cap(buf)))
}
func (wasmHost) ConfigRead(s int32, buf []byte) int32 {
	return hostConfigRead(s, ptr(buf), uint32(cap(buf)))
}
func (wasmHost) HTTPSend(s int32, head, body []byte) int32 {
	return hostHTTPSend(s, ptr(head), uint32(len(head)), ptr(body), uint32(len(body)))
}
func (wasmHost) HTTPBody(h int32, mode abi.BodyMode) int32 { return hostHTTPBody(h, int32(mode)) }
func (wasmHost) HTTPHeader(h int32, name, buf []byte) int32 {
	return hostHTTPHeader(h, ptr(name), uint32(len(name)), ptr(buf), uint32(cap(buf)))
}
func (wasmHost) HTTPClose(h int32) int32   { return hostHTTPClose(h) }
func (wasmHost) DataRead(buf []byte) int32 { return hostDataRead(ptr(buf), uint32(cap(buf))) }
func (wasmHost) Emit(s int32, kind abi.Kind, data []byte) int32 {
	return hostEmit(s, int32(kind), ptr(data), uint32(len(data)))
}
func (wasmHost) Fail(s int32, status int32, body []byte) int32 {
	return hostFail(s, status, ptr(body), uint32(len(body)))
}
func (wasmHost) Finish(s int32) int32 { return hostFinish(s) }
func (wasmHost) FetchImage(s int32, url []byte) int32 {
	return hostFetchImage(s, ptr(url), uint32(len(url)))
}
func (wasmHost) SetTimer(s int32, ms int32) int32 { return hostSetTimer(s, ms) }

// JSONTape passes the tape's backing array as bytes: wasm is little-endian,
// the byte order json_tape writes, so the words are read as they land.
func (wasmHost) JSONTape(data []byte, tape []uint32) int32 {
	var p unsafe.Pointer
	if cap(tape) > 0 {
		p = unsafe.Pointer(unsafe.SliceData(tape))
	}
	return hostJSONTape(ptr(data), uint32(len(data)), p, uint32(cap(tape))*4)
}
func (wasmHost) Log(level int32, msg []byte) int32 {
	return hostLog(level, ptr(msg), uint32(len(msg)))
}
