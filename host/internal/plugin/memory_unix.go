//go:build unix

package plugin

import (
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// reservedMemory backs a guest's linear memory with one anonymous mapping
// of the memory's maximum size, made once when the instance starts.
//
// wazero's default grows memory by appending to a Go slice: every
// memory.grow allocates a new buffer, copies the old one into it and leaves
// the old one to the garbage collector. With a Go guest that grows its
// memory a few times at start, that cost CPU on every new instance and kept
// 12-17 MiB of host heap per instance. A reserved mapping never moves and
// never copies; the kernel backs a page only when the guest first touches
// it, so an instance's resident size is what it used; and unmapping on
// close returns the memory to the system at once.
//
// wazero frees a memory on the goroutine that runs the guest (a context
// deadline only marks the module closed), so no host function can be
// reading a view of it when it is unmapped.
type reservedMemory struct {
	buf []byte
}

func (m *reservedMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.buf)) {
		return nil // memory.grow fails in the guest; its cap is reached
	}
	return m.buf[:size:size]
}

func (m *reservedMemory) Free() {
	if m.buf != nil {
		_ = syscall.Munmap(m.buf)
		m.buf = nil
	}
}

// heapMemory is the fallback when a mapping cannot be made.
type heapMemory struct{ buf []byte }

func (m *heapMemory) Reallocate(size uint64) []byte {
	if size > uint64(cap(m.buf)) {
		nb := make([]byte, size, max(size, 2*uint64(cap(m.buf))))
		copy(nb, m.buf)
		m.buf = nb
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *heapMemory) Free() { m.buf = nil }

var memoryAllocator experimental.MemoryAllocator = experimental.MemoryAllocatorFunc(func(_, max uint64) experimental.LinearMemory {
	if max == 0 || max > 1<<32 {
		return &heapMemory{}
	}
	b, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return &heapMemory{}
	}
	return &reservedMemory{buf: b}
})
