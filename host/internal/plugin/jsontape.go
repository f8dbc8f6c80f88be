package plugin

import (
	"encoding/binary"
	"sync"
	"unsafe"

	"github.com/tetratelabs/wazero/api"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// hostJSONTape is json_tape(buf, len, tape, cap): it indexes the
// JSON document in [buf, buf+len) natively and writes its tape, 16 bytes
// per entry (sdk/rawjson), at [tape, tape+cap) when it fits. It returns the
// number of entries either way, StatusMalformed for input that is not one
// JSON value, StatusInvalid for a range outside memory.
//
// Why it exists: a guest scanning JSON pays wasm prices per byte (and,
// before the patched runtime counted its deadline checks down, an exit to
// the host per loop iteration); with the tape it pays per value.
// RATIONALE.md has the figures.
func hostJSONTape(_ *worker, mod api.Module, a []uint64) abi.Status {
	data, ok := view(mod, a[0], a[1])
	if !ok {
		return abi.StatusInvalid
	}
	s := tapeScratch.Get().(*tapeBufs)
	defer tapeScratch.Put(s)
	var err error
	s.words, err = rawjson.AppendTape(s.words[:0], data)
	if err != nil {
		return abi.StatusMalformed
	}
	n := len(s.words) / rawjson.EntryWords
	if len(s.words)*4 <= int(uint32(a[3])) {
		if !mod.Memory().Write(uint32(a[2]), tapeBytes(s)) {
			return abi.StatusInvalid
		}
	}
	return abi.Status(n)
}

// tapeBytes is the tape as little-endian bytes: the words' own memory on a
// little-endian host, an encoded copy otherwise.
func tapeBytes(s *tapeBufs) []byte {
	if littleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s.words))), len(s.words)*4)
	}
	b := s.bytes[:0]
	for _, w := range s.words {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	s.bytes = b
	return b
}

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

type tapeBufs struct {
	words []uint32
	bytes []byte
}

var tapeScratch = sync.Pool{New: func() any { return &tapeBufs{} }}
