package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// The figures of a process come from Linux's /proc: CPU time from
// /proc/PID/stat (user plus system time of every thread, in clock ticks)
// and resident memory from the VmRSS line of /proc/PID/status.

// parseStatCPU returns utime+stime from the contents of /proc/PID/stat.
// The command name (field 2) is in parentheses and may itself hold spaces
// or parentheses, so the fields are counted from the last ')'.
func parseStatCPU(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	// After ")": state is field 3, so utime (field 14) and stime (field 15)
	// are at offsets 11 and 12 of what follows.
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: only %d fields after the command name", len(f))
	}
	user, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat utime: %w", err)
	}
	sys, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat stime: %w", err)
	}
	return user + sys, nil
}

// parseStatusRSS returns VmRSS in KiB from the contents of /proc/PID/status.
func parseStatusRSS(status []byte) (uint64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("status: odd VmRSS line %q", line)
		}
		return strconv.ParseUint(f[0], 10, 64)
	}
	return 0, errors.New("status: no VmRSS line (process gone or a kernel thread?)")
}

// cpuTicks reads the CPU time a process has used so far, in clock ticks.
func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// rssKiB reads the resident set size of a process in KiB.
func rssKiB(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusRSS(b)
}

var (
	clkOnce sync.Once
	clkTck  = 100
)

// clockTicks returns the kernel's USER_HZ as reported by `getconf CLK_TCK`,
// or 100 (the value on every mainstream Linux build) if that fails.
func clockTicks() int {
	clkOnce.Do(func() {
		out, err := exec.Command("getconf", "CLK_TCK").Output()
		if err != nil {
			return
		}
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			clkTck = n
		}
	})
	return clkTck
}

// ticksToMicros converts clock ticks to microseconds.
func ticksToMicros(t uint64) float64 {
	return float64(t) * 1e6 / float64(clockTicks())
}

// machineInfo describes the host for the report header.
type machineInfo struct {
	CPUs     int
	Model    string
	MemTotal string
	Kernel   string
}

func readMachineInfo(nproc int) machineInfo {
	m := machineInfo{CPUs: nproc, Model: "unknown", MemTotal: "unknown", Kernel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				f := strings.Fields(rest)
				if len(f) == 2 {
					if kib, err := strconv.ParseUint(f[0], 10, 64); err == nil {
						m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
					}
				}
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// parseStatBusy returns the busy time of all CPUs together from the
// contents of /proc/stat, in clock ticks: user, nice, system and steal
// (time the hypervisor gave to someone else). Interrupt time is left out
// because the kernel may not charge it to the processes that caused it
// (loopback traffic is mostly softirq work), which would make our own
// traffic look like someone else's.
func parseStatBusy(stat []byte) (uint64, error) {
	line, _, _ := strings.Cut(string(stat), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, errors.New("/proc/stat: no aggregate cpu line")
	}
	var busy uint64
	for i, v := range f[1:] {
		// Fields: user nice system idle iowait irq softirq steal guest
		// guest_nice. Guest time is already part of user and nice.
		if i >= 3 && i != 7 {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += n
	}
	return busy, nil
}

// machineBusy reads the busy ticks of the whole machine.
func machineBusy() (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseStatBusy(b)
}

// loadAvg returns the 1-minute load average as written in /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}
