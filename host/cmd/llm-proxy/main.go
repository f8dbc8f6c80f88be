// Command llm-proxy is an OpenAI-compatible LLM gateway whose providers are
// WebAssembly plugins.
//
//	llm-proxy [--config config.toml]     serve
//	llm-proxy --check [--config FILE]    validate the config and exit
//	llm-proxy keygen                     print a new random admin key
//	llm-proxy keygen --encryption-key [--file F]   a new 32-byte master key
//	llm-proxy migrate status             where the database stands
//	llm-proxy keys create --name N [--models a,b] [--expires 30d]
//	llm-proxy keys list | revoke ID | rotate ID   (flags before ID)
//	llm-proxy rotate-encryption-key --new-key-file F
//	llm-proxy users create --name N [--admin]     password on stdin
//	llm-proxy version
//
// --config may also come before a command that reads the config; any other
// word after the server's flags is refused with the usage.
//
// See README.md for a tour and config.toml for every setting.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/app"
	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/secrets"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

func run(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "keygen":
			return keygen(args[1:], stdout, stderr)
		case "version":
			fmt.Fprintln(stdout, "llm-proxy", version)
			return 0
		case "migrate":
			return migrate(args[1:], environ, stdout, stderr)
		case "keys":
			return keysCmd(args[1:], environ, stdout, stderr)
		case "users":
			return usersCmd(args[1:], environ, stdout, stderr)
		case "rotate-encryption-key":
			return rotateKey(args[1:], environ, stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("llm-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "config.toml", "path of the TOML config file")
	check := fs.Bool("check", false, "validate the config and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		return afterGlobalFlags(fs, *path, *check, environ, stdout, stderr)
	}
	cfg, ok := loadConfig(*path, environ, stderr)
	if !ok {
		return 2
	}
	if *check {
		fmt.Fprintf(stdout, "%s: ok (%d providers)\n", *path, len(cfg.Providers))
		return 0
	}
	log := newLogger(cfg, stderr)
	a, err := app.New(cfg, environ, log)
	if err != nil {
		fmt.Fprintln(stderr, "llm-proxy:", err)
		if errors.Is(err, app.ErrNoAdminKey) || errors.Is(err, app.ErrWeakAdminKey) || errors.Is(err, app.ErrNoEncryptionKey) {
			return 2
		}
		return 1
	}
	// Signals are caught before the first request can arrive: a SIGTERM
	// must always mean a graceful shutdown, never the default exit.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		fmt.Fprintln(stderr, "llm-proxy:", err)
		return 1
	}
	a.Version = version
	if err := a.Start(ln); err != nil {
		fmt.Fprintln(stderr, "llm-proxy:", err)
		return 1
	}
	log.Info("llm-proxy listening", "addr", ln.Addr().String(), "version", version,
		"plugins_dir", cfg.Plugins.Dir, "providers", len(cfg.Providers))

	s := <-sig
	log.Info("shutting down", "signal", s.String(), "deadline", cfg.Server.ShutdownTimeout.String())
	if err := a.Shutdown(); err != nil {
		log.Warn("shutdown deadline passed with requests in flight", "err", err)
	}
	log.Info("stopped")
	return 0
}

// migrate implements `llm-proxy migrate status|up [--config FILE]`.
// status reports where the database stands against the migrations built
// into this binary and never changes it. up applies the pending ones (the
// server does too when it starts; with several replicas, run it once
// before rolling a new version out), then reports the same.
func migrate(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "status" && args[0] != "up") {
		fmt.Fprintln(stderr, "usage: llm-proxy migrate status|up [--config FILE]")
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("llm-proxy migrate "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "config.toml", "path of the TOML config file")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg, ok := loadConfig(*path, environ, stderr)
	if !ok {
		return 2
	}
	ctx := context.Background()
	if verb == "up" {
		st, err := app.OpenStore(ctx, cfg, environ)
		if err != nil {
			fmt.Fprintln(stderr, "llm-proxy:", err)
			return 1
		}
		st.Close()
	}
	where, states, err := app.MigrationStatus(ctx, cfg, environ)
	if err != nil {
		fmt.Fprintln(stderr, "llm-proxy:", err)
		return 1
	}
	fmt.Fprintln(stdout, "database", where)
	for _, m := range states {
		state := "pending"
		if m.Applied {
			state = "applied " + m.AppliedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(stdout, "%05d  %-30s %s\n", m.Version, m.Name, state)
	}
	return 0
}

// keygen prints a new admin key, or with --encryption-key a new 32-byte
// master key (written to --file with mode 0600, never over an existing file).
// usage lists the commands, for a command line that names none of them.
const usage = `usage:
  llm-proxy [--config FILE]            serve
  llm-proxy --check [--config FILE]    validate the config and exit
  llm-proxy keygen [--encryption-key [--file F]]
  llm-proxy migrate status|up [--config FILE]
  llm-proxy keys create|list|revoke|rotate [--config FILE] ...
  llm-proxy users create|list|... [--config FILE] ...
  llm-proxy rotate-encryption-key [--config FILE] --new-key-file F
  llm-proxy version
(--config may also come before a command that reads the config)`

// afterGlobalFlags handles words left after the server's flags, as in
// "llm-proxy --config FILE users create ...": a command that reads the
// config runs with that --config; anything else is refused with the usage,
// never ignored (the server would otherwise start instead).
func afterGlobalFlags(fs *flag.FlagSet, path string, check bool, environ []string, stdout, stderr io.Writer) int {
	rest := fs.Args()
	cmd := rest[0]
	configSet := false
	fs.Visit(func(f *flag.Flag) { configSet = configSet || f.Name == "config" })
	withConfig := func(verbs int) []string {
		// The commands read their flags after their verb (keys create
		// --name ...), so --config goes there; one given there still wins.
		n := min(verbs, len(rest)-1)
		out := append([]string(nil), rest[1:1+n]...)
		if configSet {
			out = append(out, "--config", path)
		}
		return append(out, rest[1+n:]...)
	}
	switch {
	case check:
		fmt.Fprintf(stderr, "llm-proxy: --check takes no command, got %q\n%s\n", cmd, usage)
		return 2
	case cmd == "migrate":
		return migrate(withConfig(1), environ, stdout, stderr)
	case cmd == "keys":
		return keysCmd(withConfig(1), environ, stdout, stderr)
	case cmd == "users":
		return usersCmd(withConfig(1), environ, stdout, stderr)
	case cmd == "rotate-encryption-key":
		return rotateKey(withConfig(0), environ, stdout, stderr)
	case cmd == "keygen" || cmd == "version":
		fmt.Fprintf(stderr, "llm-proxy: %s reads no config: run it without --config\n", cmd)
		return 2
	}
	fmt.Fprintf(stderr, "llm-proxy: unknown command or argument %q\n%s\n", cmd, usage)
	return 2
}

func keygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("llm-proxy keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	enc := fs.Bool("encryption-key", false, "make the 32-byte master key instead of an admin key")
	file := fs.String("file", "", "with --encryption-key: write the key to this new file (mode 0600)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch {
	case !*enc:
		var b [24]byte
		_, _ = rand.Read(b[:])
		fmt.Fprintln(stdout, "sk-llmproxy-"+hex.EncodeToString(b[:]))
	case *file == "":
		fmt.Fprintln(stdout, secrets.NewKeyString())
	default:
		if err := secrets.WriteKeyFile(*file); err != nil {
			fmt.Fprintln(stderr, "llm-proxy:", err)
			return 1
		}
		fmt.Fprintf(stderr, "wrote a new encryption key to %s (mode 0600); keep a copy: without it stored secrets cannot be read\n", *file)
	}
	return 0
}

// loadConfig loads and validates the config, printing every problem.
func loadConfig(path string, environ []string, stderr io.Writer) (*config.Config, bool) {
	cfg, err := config.Load(path, environ)
	if err != nil {
		fmt.Fprintf(stderr, "llm-proxy: invalid config %s:\n%v\n", path, err)
		return nil, false
	}
	return cfg, true
}

// openDatabase loads the config and opens its database for a command,
// printing any problem; when st is nil, code is the exit status.
func openDatabase(path string, environ []string, stderr io.Writer) (cfg *config.Config, st *store.Store, code int) {
	cfg, ok := loadConfig(path, environ, stderr)
	if !ok {
		return nil, nil, 2
	}
	st, err := app.OpenStore(context.Background(), cfg, environ)
	if err != nil {
		fmt.Fprintln(stderr, "llm-proxy:", err)
		return nil, nil, 1
	}
	return cfg, st, 0
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
