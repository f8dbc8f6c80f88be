package plugin

import "time"

// SetTick shortens the scheduler's period (idle instances, the callback
// rate) for a test; schedulers made afterwards use it.
func SetTick(d time.Duration) (restore func()) {
	old := tick
	tick = d
	return func() { tick = old }
}

// HostFuncNames lists the names with an implementation.
func HostFuncNames() []string {
	names := make([]string, 0, len(hostFuncs))
	for n := range hostFuncs {
		names = append(names, n)
	}
	return names
}
