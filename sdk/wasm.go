//go:build wasip1

package sdk

import (
	"unsafe"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

//go:wasmexport llmproxy_handle
func llmproxyHandle(op int32) int32 {
	if registered == nil {
		return 1
	}
	return Serve(wasmHost{}, registered, abi.Op(op))
}

//go:wasmimport llmproxy_v1 request_read
func hostRequestRead(buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport llmproxy_v1 config_read
func hostConfigRead(buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport llmproxy_v1 http_send
func hostHTTPSend(head unsafe.Pointer, headLen uint32, body unsafe.Pointer, bodyLen uint32) int32

//go:wasmimport llmproxy_v1 http_status
func hostHTTPStatus(handle int32) int32

//go:wasmimport llmproxy_v1 http_header
func hostHTTPHeader(handle int32, name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport llmproxy_v1 http_read
func hostHTTPRead(handle int32, buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport llmproxy_v1 http_read_event
func hostHTTPReadEvent(handle int32, buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport llmproxy_v1 http_close
func hostHTTPClose(handle int32) int32

//go:wasmimport llmproxy_v1 emit
func hostEmit(kind int32, buf unsafe.Pointer, length uint32) int32

//go:wasmimport llmproxy_v1 fail
func hostFail(status int32, buf unsafe.Pointer, length uint32) int32

//go:wasmimport llmproxy_v1 log
func hostLog(level int32, buf unsafe.Pointer, length uint32) int32

//go:wasmimport llmproxy_v1 json_tape
func hostJSONTape(buf unsafe.Pointer, length uint32, tape unsafe.Pointer, capacity uint32) int32

//go:wasmimport llmproxy_v1 fetch_image
func hostFetchImage(url unsafe.Pointer, urlLen uint32, buf unsafe.Pointer, capacity uint32) int32

// ptr returns the address of b's backing array, or nil for an empty slice.
// The host only touches the bytes in [ptr, ptr+len) (or +cap for reads)
// during the call, and Go's wasm heap does not move objects.
func ptr(b []byte) unsafe.Pointer {
	if cap(b) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(b))
}

type wasmHost struct{}

func (wasmHost) RequestRead(buf []byte) int32 { return hostRequestRead(ptr(buf), uint32(cap(buf))) }
func (wasmHost) ConfigRead(buf []byte) int32  { return hostConfigRead(ptr(buf), uint32(cap(buf))) }
func (wasmHost) HTTPSend(head, body []byte) int32 {
	return hostHTTPSend(ptr(head), uint32(len(head)), ptr(body), uint32(len(body)))
}
func (wasmHost) HTTPStatus(h int32) int32 { return hostHTTPStatus(h) }
func (wasmHost) HTTPHeader(h int32, name, buf []byte) int32 {
	return hostHTTPHeader(h, ptr(name), uint32(len(name)), ptr(buf), uint32(cap(buf)))
}
func (wasmHost) HTTPRead(h int32, buf []byte) int32 {
	return hostHTTPRead(h, ptr(buf), uint32(cap(buf)))
}
func (wasmHost) HTTPReadEvent(h int32, buf []byte) int32 {
	return hostHTTPReadEvent(h, ptr(buf), uint32(cap(buf)))
}
func (wasmHost) HTTPClose(h int32) int32 { return hostHTTPClose(h) }
func (wasmHost) Emit(kind abi.Kind, data []byte) int32 {
	return hostEmit(int32(kind), ptr(data), uint32(len(data)))
}
func (wasmHost) Fail(status int32, body []byte) int32 {
	return hostFail(status, ptr(body), uint32(len(body)))
}
func (wasmHost) Log(level int32, msg []byte) int32 {
	return hostLog(level, ptr(msg), uint32(len(msg)))
}

// JSONTape passes the tape's backing array as bytes: wasm is little-endian,
// the byte order json_tape writes, so the words are read as they land. The
// import is linked only into plugins that call Call.ParseJSON, so plugins
// that do not need ABI 1.1 keep loading on 1.0 hosts.
func (wasmHost) JSONTape(data []byte, tape []uint32) int32 {
	var p unsafe.Pointer
	if cap(tape) > 0 {
		p = unsafe.Pointer(unsafe.SliceData(tape))
	}
	return hostJSONTape(ptr(data), uint32(len(data)), p, uint32(cap(tape))*4)
}

// FetchImage is linked, like JSONTape, only into plugins that call
// Call.FetchImage.
func (wasmHost) FetchImage(url, buf []byte) int32 {
	return hostFetchImage(ptr(url), uint32(len(url)), ptr(buf), uint32(cap(buf)))
}
