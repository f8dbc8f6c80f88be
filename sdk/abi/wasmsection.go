package abi

import (
	"bytes"
	"errors"
	"strconv"
)

// The helpers below walk the top level of a WebAssembly binary: an 8-byte
// preamble ("\0asm" and version 1) followed by sections, each one byte of id,
// a LEB128 u32 payload size and the payload. A custom section (id 0) starts
// its payload with a LEB128 name length and the name. Nothing else is decoded.

// The errors of a malformed binary. (No fmt here: guests import this
// package, and fmt would add hundreds of kilobytes to every plugin.)
var (
	errMalformedName = errors.New("custom section with a malformed name")
	errLEBOverflow   = errors.New("LEB128 value overflows u32")
	errLEBTruncated  = errors.New("truncated LEB128 value")
)

// wrapped is an error with a prefix, as fmt.Errorf("...: %w", err) makes.
type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

var wasmPreamble = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// ManifestFromWasm returns the payload of the ManifestSection custom section.
func ManifestFromWasm(wasm []byte) ([]byte, error) {
	if !bytes.HasPrefix(wasm, wasmPreamble) {
		return nil, ErrNotWasm
	}
	var found []byte
	err := walkSections(wasm, func(id byte, payload []byte, start, end int) error {
		if id != 0 {
			return nil
		}
		name, data, err := splitCustom(payload)
		if err != nil {
			return err
		}
		if name == ManifestSection {
			if found != nil {
				return ErrDuplicateSection
			}
			found = data
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, ErrNoManifest
	}
	return found, nil
}

// WithManifest returns a copy of wasm whose ManifestSection holds manifest:
// an existing manifest section is removed and a new one appended at the end.
func WithManifest(wasm, manifest []byte) ([]byte, error) {
	if !bytes.HasPrefix(wasm, wasmPreamble) {
		return nil, ErrNotWasm
	}
	out := make([]byte, 0, len(wasm)+len(manifest)+32)
	out = append(out, wasmPreamble...)
	err := walkSections(wasm, func(id byte, payload []byte, start, end int) error {
		if id == 0 {
			name, _, err := splitCustom(payload)
			if err != nil {
				return err
			}
			if name == ManifestSection {
				return nil
			}
		}
		out = append(out, wasm[start:end]...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var payload []byte
	payload = appendULEB(payload, uint32(len(ManifestSection)))
	payload = append(payload, ManifestSection...)
	payload = append(payload, manifest...)
	out = append(out, 0)
	out = appendULEB(out, uint32(len(payload)))
	return append(out, payload...), nil
}

func walkSections(wasm []byte, fn func(id byte, payload []byte, start, end int) error) error {
	off := len(wasmPreamble)
	for off < len(wasm) {
		start := off
		id := wasm[off]
		off++
		size, n, err := readULEB(wasm[off:])
		if err != nil {
			return &wrapped{"section at offset " + strconv.Itoa(start) + ": " + err.Error(), err}
		}
		off += n
		if uint64(size) > uint64(len(wasm)-off) {
			return errors.New("section at offset " + strconv.Itoa(start) + ": size " + strconv.FormatUint(uint64(size), 10) + " runs past the end of the file")
		}
		end := off + int(size)
		if err := fn(id, wasm[off:end], start, end); err != nil {
			return err
		}
		off = end
	}
	return nil
}

func splitCustom(payload []byte) (string, []byte, error) {
	n, k, err := readULEB(payload)
	if err != nil || uint64(n) > uint64(len(payload)-k) {
		return "", nil, errMalformedName
	}
	return string(payload[k : k+int(n)]), payload[k+int(n):], nil
}

func readULEB(b []byte) (uint32, int, error) {
	var v uint32
	for i := 0; i < 5 && i < len(b); i++ {
		c := b[i]
		if i == 4 && c > 0x0f {
			return 0, 0, errLEBOverflow
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, i + 1, nil
		}
	}
	return 0, 0, errLEBTruncated
}

func appendULEB(dst []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			dst = append(dst, c|0x80)
			continue
		}
		return append(dst, c)
	}
}
