package main

import (
	"encoding/json"
	"os"
	"testing"
	"time"
)

// These tests cover the helpers only; the benchmark itself needs the built
// binaries and minutes of CPU and is never run by `go test`.

func TestCPUTicksOfSelf(t *testing.T) {
	pid := os.Getpid()
	before, err := cpuTicks(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Burn a little CPU so the counter has a reason to move.
	x := 0
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
		x++
	}
	after, err := cpuTicks(pid)
	if err != nil {
		t.Fatal(err)
	}
	if after < before {
		t.Fatalf("CPU ticks went backwards: %d then %d", before, after)
	}
	if after == 0 {
		t.Fatalf("no CPU time recorded after a busy loop of %d iterations", x)
	}
}

func TestRSSOfSelf(t *testing.T) {
	kib, err := rssKiB(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if kib == 0 {
		t.Fatal("VmRSS of the test process is 0")
	}
}

func TestParseStatCPU(t *testing.T) {
	// A command name with a space and a ')' must not shift the fields.
	stat := []byte("1234 (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 1 0 42 1000 50\n")
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if got != 22 {
		t.Fatalf("utime+stime = %d, want 22", got)
	}
	if _, err := parseStatCPU([]byte("1 (x) S 1")); err == nil {
		t.Fatal("a truncated stat line was accepted")
	}
}

func TestParseStatusRSS(t *testing.T) {
	got, err := parseStatusRSS([]byte("Name:\tx\nVmHWM:\t  900 kB\nVmRSS:\t  812 kB\nThreads:\t3\n"))
	if err != nil || got != 812 {
		t.Fatalf("got %d, %v; want 812", got, err)
	}
	if _, err := parseStatusRSS([]byte("Name:\tkthreadd\n")); err == nil {
		t.Fatal("a status without VmRSS was accepted")
	}
}

func TestParseStatBusy(t *testing.T) {
	got, err := parseStatBusy([]byte("cpu  100 5 50 9000 30 7 3 2 40 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got != 100+5+50+2 {
		t.Fatalf("busy = %d, want %d", got, 100+5+50+2)
	}
	if _, err := machineBusy(); err != nil {
		t.Fatal(err)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	sortDurations(d)
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.1, time.Millisecond}} {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile([]time.Duration{7}, 50); got != 7 {
		t.Errorf("p50 of one value = %v, want 7", got)
	}
	if got := percentile(nil, 50); got != -1 {
		t.Errorf("p50 of nothing = %v, want -1", got)
	}
}

func TestChatBodyIsJSON(t *testing.T) {
	for _, stream := range []bool{false, true} {
		b := chatBody("gpt-4o-mini", stream)
		if !json.Valid(b) {
			t.Fatalf("chatBody(stream=%v) is not valid JSON: %s", stream, b)
		}
	}
}
