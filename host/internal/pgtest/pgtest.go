// Package pgtest runs private PostgreSQL servers for tests: initdb into a
// temporary directory, the server as a child process listening on a Unix
// socket only (no port to collide with anything), tuned for speed over
// durability (fsync off). Each test gets a database of its own on a server
// shared by the test binary; [Main] stops it when the tests end.
//
// The server binaries are Debian's postgresql package (found on PATH or
// under /usr/lib/postgresql/<version>/bin; `go tool task postgres` installs
// it). Without them tests skip, unless LLMPROXY_REQUIRE_POSTGRES=1, which CI
// sets, makes them fail. As root, the server runs as the "postgres" user,
// since PostgreSQL refuses to run as root.
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// Server is a running PostgreSQL server.
type Server struct {
	dir     string // the temporary directory: data/, sock/, log
	durable bool   // fsync and synchronous commits on, as in production
	bin     string
	cred    *syscall.Credential
	cmd     *exec.Cmd
	done    chan error
}

// binDir finds the directory of initdb and postgres.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("postgres"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", ErrNotInstalled
}

// ErrNotInstalled reports that no PostgreSQL server binaries were found.
var ErrNotInstalled = errors.New("PostgreSQL is not installed (no initdb and postgres on PATH or under /usr/lib/postgresql/*/bin): run `go tool task postgres`, or apt-get install postgresql")

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Start initialises and starts a new server; Stop ends it and removes its
// files. It trades durability for speed (fsync and synchronous commits
// off): a test's data need not survive a power cut.
func Start() (*Server, error) { return start(false) }

// StartDurable is Start with PostgreSQL's default durability (every
// commit flushed to disk), for benchmarks whose figures must hold in
// production.
func StartDurable() (*Server, error) { return start(true) }

func start(durable bool) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "llmproxy-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, bin: bin, durable: durable}
	cred, err := credential()
	s.cred = cred
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	for _, d := range []string{dir, filepath.Join(dir, "sock")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if cred != nil {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				os.RemoveAll(dir)
				return nil, err
			}
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"),
		"--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if err := s.run(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// run starts the server on its data directory and waits until it answers.
func (s *Server) run() error {
	logf, err := os.OpenFile(filepath.Join(s.dir, "log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"-D", filepath.Join(s.dir, "data"), "-k", filepath.Join(s.dir, "sock"),
		"-c", "listen_addresses=", "-c", "max_connections=200", "-c", "shared_buffers=64MB"}
	if !s.durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	s.cmd = exec.Command(filepath.Join(s.bin, "postgres"), args...)
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// The server dies with the test binary, even a killed one.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	done := make(chan error, 1)
	s.done = done
	go func() { done <- s.cmd.Wait() }()
	return s.waitReady(30 * time.Second)
}

// Halt stops the server (a fast shutdown: sessions are cut) and keeps its
// files, for Resume: a database going away under load.
func (s *Server) Halt() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
		s.cmd = nil
	}
}

// Resume starts a halted server again on the same data.
func (s *Server) Resume() error { return s.run() }

// credential is the user the server runs as: the current one, or
// "postgres" for root.
func credential() (*syscall.Credential, error) {
	if os.Getuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL cannot run as root and there is no \"postgres\" user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (s *Server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		db, err := sql.Open("pgx", s.DSN("postgres"))
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err = db.PingContext(ctx)
			cancel()
			db.Close()
		}
		if err == nil {
			return nil
		}
		select {
		case werr := <-s.done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
			return fmt.Errorf("postgres exited: %v\n%s", werr, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
			return fmt.Errorf("postgres not ready after %s: %v\n%s", limit, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// DSN is the connection string of database db on this server.
func (s *Server) DSN(db string) string {
	return "host=" + filepath.Join(s.dir, "sock") + " user=postgres dbname=" + db + " sslmode=disable"
}

// CreateDB makes a new, empty database and returns its DSN.
func (s *Server) CreateDB(ctx context.Context) (string, error) {
	var b [6]byte
	rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	db, err := sql.Open("pgx", s.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return s.DSN(name), nil
}

// Stop ends the server (a fast shutdown: sessions are cut) and removes its
// files.
func (s *Server) Stop() error {
	s.Halt()
	return os.RemoveAll(s.dir)
}

// Private starts a server of the test's own, stopped when the test ends:
// for a test that stops and restarts it (Halt, Resume). It skips as New
// does.
func Private(t testing.TB) *Server {
	t.Helper()
	s, err := Start()
	if err != nil {
		if errors.Is(err, ErrNotInstalled) && os.Getenv("LLMPROXY_REQUIRE_POSTGRES") != "1" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error

	durableOnce sync.Once
	durable     *Server
	durableErr  error
)

// NewDurable is New on a second shared server with PostgreSQL's default
// durability (StartDurable), for benchmarks.
func NewDurable(tb testing.TB) string {
	tb.Helper()
	durableOnce.Do(func() { durable, durableErr = StartDurable() })
	return newOn(tb, durable, durableErr)
}

// New returns the DSN of a new database on the test binary's shared
// server, started on first use. It skips the test when PostgreSQL is not
// installed, unless LLMPROXY_REQUIRE_POSTGRES=1. The database is left for
// the server's end ([Main]).
func New(t testing.TB) string {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = Start() })
	return newOn(t, shared, sharedErr)
}

func newOn(t testing.TB, s *Server, err error) string {
	t.Helper()
	if err != nil {
		if errors.Is(err, ErrNotInstalled) && os.Getenv("LLMPROXY_REQUIRE_POSTGRES") != "1" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	dsn, err := s.CreateDB(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// Main runs the tests of a package that uses New, then stops the shared
// server: call it from TestMain as os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	for _, s := range []*Server{shared, durable} {
		if s != nil {
			s.Stop()
		}
	}
	return code
}

// Durable returns the server of NewDurable, nil before its first use.
func Durable() *Server { return durable }

// CPUTime is the CPU time (user and system) the server's processes (the
// postmaster and its children: backends and background workers) have
// used so far, as /proc tells on Linux; 0 elsewhere. Backends that already exited are not
// counted, so read it while the connections of interest are open.
func (s *Server) CPUTime() time.Duration {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	pid := s.cmd.Process.Pid
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var ticks int64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The fields after the command (which may hold spaces) start
		// after the last ')': state, ppid, ... utime is field 14, stime
		// 15 (counting from pid as 1). Backends start sessions of their
		// own (setsid), so they are found by their parent.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		self, _ := strconv.Atoi(e.Name())
		if parent, _ := strconv.Atoi(f[1]); self != pid && parent != pid {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}
