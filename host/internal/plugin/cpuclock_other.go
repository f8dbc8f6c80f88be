//go:build !linux

package plugin

import "time"

// threadClock: per-thread CPU clocks are read on Linux only; elsewhere the
// callback deadline is wall time.
type threadClock int32

func currentThreadClock() (threadClock, time.Duration, bool) { return 0, 0, false }

func (c threadClock) read() (time.Duration, bool) { return 0, false }
