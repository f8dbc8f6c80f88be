package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tailBuffer keeps the last max bytes written to it: the recent output of a
// child process, shown when something goes wrong.
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// child is one process started by the benchmark.
type child struct {
	name  string
	cmd   *exec.Cmd
	pid   int
	out   *tailBuffer
	stdin io.WriteCloser // held open; closing it tells a helper to exit
	done  chan struct{}  // closed once the process has been reaped
	err   error          // exit status, valid after done
}

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// describe returns the exit status (if any) and the tail of the output.
func (c *child) describe() string {
	var sb strings.Builder
	if c.exited() {
		fmt.Fprintf(&sb, "%s (pid %d) exited: %v\n", c.name, c.pid, c.err)
	}
	if s := strings.TrimSpace(c.out.String()); s != "" {
		fmt.Fprintf(&sb, "last output of %s:\n%s\n", c.name, s)
	}
	return sb.String()
}

// supervisor starts child processes and makes sure they all die with the
// benchmark. Each child leads its own process group, so killing the group
// also takes down anything it started; Pdeathsig covers the case where the
// benchmark itself is killed without a chance to clean up, and helpers
// additionally exit when the stdin pipe we hold is closed.
type supervisor struct {
	mu   sync.Mutex
	kids []*child
}

func killGroup(pid int) error {
	if pid <= 0 {
		return nil
	}
	err := syscall.Kill(-pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// start launches argv. With wantLine it waits for the first line the child
// prints on stdout and returns it (the helpers print their bound address).
func (s *supervisor) start(ctx context.Context, name string, argv, env []string, dir string, wantLine bool) (*child, string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = 3 * time.Second
	c := &child{name: name, cmd: cmd, out: &tailBuffer{max: 16 << 10}, done: make(chan struct{})}
	cmd.Stderr = c.out
	var stdout io.ReadCloser
	var err error
	if wantLine {
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, "", err
		}
		if c.stdin, err = cmd.StdinPipe(); err != nil {
			return nil, "", err
		}
	} else {
		cmd.Stdout = c.out
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	c.pid = cmd.Process.Pid
	s.mu.Lock()
	s.kids = append(s.kids, c)
	s.mu.Unlock()

	lines := make(chan string, 1)
	go func() {
		if stdout != nil {
			br := bufio.NewReader(stdout)
			line, _ := br.ReadString('\n')
			lines <- strings.TrimSpace(line)
			_, _ = io.Copy(c.out, br)
		}
		c.err = cmd.Wait()
		close(c.done)
	}()
	if !wantLine {
		return c, "", nil
	}
	select {
	case line := <-lines:
		if line == "" {
			<-c.done
			return nil, "", fmt.Errorf("%s printed nothing before exiting\n%s", name, c.describe())
		}
		return c, line, nil
	case <-time.After(20 * time.Second):
		return nil, "", fmt.Errorf("%s did not report its address within 20s\n%s", name, c.describe())
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
}

// stopAll kills every child's process group and waits for them to be reaped.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	kids := s.kids
	s.kids = nil
	s.mu.Unlock()
	for i := len(kids) - 1; i >= 0; i-- {
		c := kids[i]
		if c.stdin != nil {
			_ = c.stdin.Close()
		}
		_ = killGroup(c.pid)
	}
	for _, c := range kids {
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
		}
	}
}

// firstExited returns a child that has died, if any.
func (s *supervisor) firstExited() *child {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.kids {
		if c.exited() {
			return c
		}
	}
	return nil
}
