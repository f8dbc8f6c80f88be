package experimental

import "github.com/tetratelabs/wazero/api"

// InterruptModule (llm-proxy's patch) ends a call running in mod on another
// goroutine with exitCode, as a done context would: with
// RuntimeConfig.WithCloseOnContextDone, the call stops at its next
// termination check and returns a sys.ExitError with exitCode; mod is
// closed. It reports false for a module it cannot interrupt.
//
// A caller that bounds every call with its own timer and InterruptModule
// can pass a context that is never done, which spares the goroutine wazero
// otherwise starts per call to watch the context.
func InterruptModule(mod api.Module, exitCode uint32) bool {
	m, ok := mod.(interface{ Interrupt(exitCode uint32) })
	if !ok {
		return false
	}
	m.Interrupt(exitCode)
	return true
}
