package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/secrets"
	"github.com/llm-proxy/llm-proxy/host/internal/users"
)

// stdin is where passwords are read from (tests replace it).
var stdin io.Reader = os.Stdin

const usersUsage = `usage (passwords are read from standard input, never from a flag):
  llm-proxy users create --name NAME [--admin] [--config FILE]
  llm-proxy users passwd --name NAME [--config FILE]
  llm-proxy users disable|enable --name NAME [--config FILE]
  llm-proxy users list [--config FILE]`

// usersCmd manages dashboard accounts in the database named by the config.
func usersCmd(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usersUsage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("llm-proxy users "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "config.toml", "path of the TOML config file")
	name := fs.String("name", "", "the username")
	admin := fs.Bool("admin", false, "create an admin (default: a viewer)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	_, st, code := openDatabase(*path, environ, stderr)
	if st == nil {
		return code
	}
	defer st.Close()
	ctx := context.Background()
	us := users.New(st)
	now := time.Now()
	fail := func(err error) int {
		fmt.Fprintln(stderr, "llm-proxy:", err)
		if errors.Is(err, users.ErrNotFound) || errors.Is(err, users.ErrExists) || errors.Is(err, users.ErrBadUsername) ||
			errors.Is(err, secrets.ErrPasswordTooShort) || errors.Is(err, secrets.ErrPasswordTooLong) {
			return 2
		}
		return 1
	}
	switch verb {
	case "create", "passwd":
		if *name == "" {
			fmt.Fprintln(stderr, usersUsage)
			return 2
		}
		pw, err := readPassword()
		if err != nil {
			return fail(err)
		}
		if verb == "create" {
			role := users.RoleViewer
			if *admin {
				role = users.RoleAdmin
			}
			u, err := us.Create(ctx, *name, pw, role, now)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "created %s %s (%s)\n", u.Role, u.Username, u.ID)
		} else {
			if err := us.SetPassword(ctx, *name, pw, now); err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "password of %s changed\n", *name)
		}
	case "disable", "enable":
		if *name == "" {
			fmt.Fprintln(stderr, usersUsage)
			return 2
		}
		if err := us.SetDisabled(ctx, *name, verb == "disable", now); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%sd %s\n", verb, *name)
	case "list":
		list, err := us.List(ctx)
		if err != nil {
			return fail(err)
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "USERNAME\tROLE\tSTATE\tCREATED")
		for _, u := range list {
			state := "active"
			if u.Disabled {
				state = "disabled"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", u.Username, u.Role, state, u.CreatedAt.Format(time.RFC3339))
		}
		w.Flush()
	default:
		fmt.Fprintln(stderr, usersUsage)
		return 2
	}
	return 0
}

// readPassword reads one line from standard input.
func readPassword() (string, error) {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", errors.New("no password on standard input (e.g. `read -rs PW; printf '%s\\n' \"$PW\" | llm-proxy users create ...`)")
	}
	return strings.TrimRight(line, "\r\n"), nil
}
