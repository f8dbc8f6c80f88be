package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/keys"
)

const keysUsage = `usage:
  llm-proxy keys create --name NAME [--models a,b] [--expires 30d|RFC3339] [LIMITS] [--config FILE]
  llm-proxy keys update [LIMITS] [--config FILE] ID
  llm-proxy keys list [--config FILE]
  llm-proxy keys revoke [--config FILE] ID
  llm-proxy keys rotate [--config FILE] ID
LIMITS (0 is no limit): --rpm N  --tpm N  --max_parallel N  --budget_usd X  --budget_period day|month`

// keysCmd manages client API keys in the database named by the config. A
// running proxy picks the changes up within a second.
func keysCmd(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, keysUsage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("llm-proxy keys "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "config.toml", "path of the TOML config file")
	name := fs.String("name", "", "a name for the key (create)")
	models := fs.String("models", "", "comma-separated model allow-list; empty allows all (create)")
	expires := fs.String("expires", "", "expiry: 30d, 12h or an RFC 3339 time; empty never expires (create)")
	rpm := fs.Int("rpm", 0, "requests per minute; 0 is no limit")
	tpm := fs.Int("tpm", 0, "tokens per minute; 0 is no limit")
	parallel := fs.Int("max_parallel", 0, "requests at once; 0 is no limit")
	budget := fs.Float64("budget_usd", 0, "budget in USD per budget_period; 0 is none")
	period := fs.String("budget_period", "", `"day" or "month" (the default with a budget)`)
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	_, st, code := openDatabase(*path, environ, stderr)
	if st == nil {
		return code
	}
	defer st.Close()
	ctx := context.Background()
	reg, err := keys.Open(ctx, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		fmt.Fprintln(stderr, "llm-proxy:", err)
		return 1
	}
	now := time.Now()
	fail := func(err error) int {
		fmt.Fprintln(stderr, "llm-proxy:", err)
		if errors.Is(err, keys.ErrBadInput) || errors.Is(err, keys.ErrNotFound) {
			return 2
		}
		return 1
	}
	switch verb {
	case "create":
		exp, err := keys.ParseExpiry(*expires, now)
		if err != nil {
			return fail(err)
		}
		var list []string
		for _, m := range strings.Split(*models, ",") {
			if m = strings.TrimSpace(m); m != "" {
				list = append(list, m)
			}
		}
		secret, k, err := reg.Create(ctx, keys.CreateRequest{Name: *name, Models: list, ExpiresAt: exp,
			Limits: keys.Limits{RPM: *rpm, TPM: *tpm, MaxParallel: *parallel, BudgetUSD: *budget, BudgetPeriod: *period}}, now)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%s\n", secret)
		fmt.Fprintf(stderr, "created key %s (%s); the secret above is shown only once\n", k.ID, k.Name)
	case "list":
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tNAME\tPREFIX\tMODELS\tEXPIRES\tSTATE\tLAST USED\tLIMITS")
		for _, k := range reg.List() {
			state, exp := "active", "never"
			if k.ExpiresAt != nil {
				exp = k.ExpiresAt.Format(time.RFC3339)
				if !now.Before(*k.ExpiresAt) {
					state = "expired"
				}
			}
			if k.RevokedAt != nil {
				state = "revoked"
			}
			ms := strings.Join(k.Models, ",")
			if ms == "" {
				ms = "*"
			}
			used := "never"
			if k.LastUsedAt != nil {
				used = k.LastUsedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, ms, exp, state, used, limitsText(k.Limits))
		}
		w.Flush()
	case "update":
		limitSet := set["rpm"] || set["tpm"] || set["max_parallel"] || set["budget_usd"] || set["budget_period"]
		if fs.NArg() != 1 || !limitSet || set["name"] || set["models"] || set["expires"] {
			fmt.Fprintln(stderr, keysUsage)
			return 2
		}
		var p keys.Patch
		if set["rpm"] {
			p.RPM = rpm
		}
		if set["tpm"] {
			p.TPM = tpm
		}
		if set["max_parallel"] {
			p.MaxParallel = parallel
		}
		if set["budget_usd"] {
			p.BudgetUSD = budget
		}
		if set["budget_period"] {
			p.BudgetPeriod = period
		}
		k, err := reg.Update(ctx, fs.Arg(0), p, now)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "updated %s: %s\n", k.ID, limitsText(k.Limits))
	case "revoke", "rotate":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, keysUsage)
			return 2
		}
		if verb == "revoke" {
			if _, err := reg.Revoke(ctx, fs.Arg(0), now); err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "revoked %s\n", fs.Arg(0))
		} else {
			secret, _, err := reg.Rotate(ctx, fs.Arg(0))
			if err != nil {
				return fail(err)
			}
			fmt.Fprintln(stdout, secret)
		}
	default:
		fmt.Fprintln(stderr, keysUsage)
		return 2
	}
	return 0
}

// limitsText is a key's limits in one cell: "rpm=60 budget=$5/day", or
// "none".
func limitsText(l keys.Limits) string {
	var parts []string
	for _, f := range []struct {
		name string
		v    int
	}{{"rpm", l.RPM}, {"tpm", l.TPM}, {"max_parallel", l.MaxParallel}} {
		if f.v > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", f.name, f.v))
		}
	}
	if l.BudgetUSD > 0 {
		parts = append(parts, fmt.Sprintf("budget=$%g/%s", l.BudgetUSD, l.BudgetPeriod))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}
