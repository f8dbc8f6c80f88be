package plugin

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadClock identifies the CPU clock of the calling OS thread, which the
// caller has locked its goroutine to. Another goroutine can read it while
// the thread runs.
type threadClock int32

// currentThreadClock is the CPU clock of the calling thread and the time
// it reads now; ok is false where the clock cannot be read.
func currentThreadClock() (c threadClock, used time.Duration, ok bool) {
	// A thread's CPU clock id, as the kernel encodes it: the thread id
	// negated and shifted, with CPUCLOCK_SCHED (2) and CPUCLOCK_PERTHREAD
	// (4) in the low bits.
	c = threadClock(^int32(unix.Gettid())<<3 | 6)
	used, ok = c.read()
	return c, used, ok
}

// read returns the CPU time the thread has used.
func (c threadClock) read() (time.Duration, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(int32(c), &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
