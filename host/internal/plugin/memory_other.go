//go:build !unix

package plugin

import "github.com/tetratelabs/wazero/experimental"

// memoryAllocator is wazero's default outside Unix.
var memoryAllocator experimental.MemoryAllocator
