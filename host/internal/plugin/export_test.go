package plugin

import "time"

// SetReapInterval shortens the idle reaper's period for a test; pools made
// afterwards use it.
func SetReapInterval(d time.Duration) (restore func()) {
	old := reapInterval
	reapInterval = d
	return func() { reapInterval = old }
}
