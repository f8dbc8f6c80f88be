//go:build race

package app_test

// raceEnabled is true when the race detector instruments this build; it
// slows wazero's compiler and loader several times over, so time budgets
// that describe production builds are only asserted without it.
const raceEnabled = true
