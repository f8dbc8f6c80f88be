package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/llm-proxy/llm-proxy/host/internal/app"
	"github.com/llm-proxy/llm-proxy/host/internal/secrets"
)

// rotateKey implements `llm-proxy rotate-encryption-key --new-key-file F`:
// every provider secret in the database is opened with the current key and
// sealed again with the new one, in one transaction. Stop the proxy first;
// afterwards make the new key the configured one and start it again.
func rotateKey(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("llm-proxy rotate-encryption-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "config.toml", "path of the TOML config file")
	newFile := fs.String("new-key-file", "", "file holding the new key (or set LLMPROXY_NEW_ENCRYPTION_KEY); make it with `llm-proxy keygen --encryption-key --file F`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, st, code := openDatabase(*path, environ, stderr)
	if st == nil {
		return code
	}
	defer st.Close()
	oldKey, err := app.LoadEncryptionKey(cfg, environ)
	if err != nil {
		fmt.Fprintln(stderr, "llm-proxy: current key:", err)
		return 1
	}
	newEnv := ""
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "LLMPROXY_NEW_ENCRYPTION_KEY="); ok {
			newEnv = v
		}
	}
	if *newFile == "" && newEnv == "" {
		fmt.Fprintln(stderr, "llm-proxy: give the new key with --new-key-file F or LLMPROXY_NEW_ENCRYPTION_KEY")
		return 2
	}
	newKey, err := secrets.LoadKey(newEnv, *newFile)
	if err != nil {
		fmt.Fprintln(stderr, "llm-proxy: new key:", err)
		return 1
	}
	ctx := context.Background()
	n, err := st.ResealProviderSecrets(ctx, func(id string, sealed []byte) ([]byte, error) {
		return secrets.Reseal(oldKey, newKey, sealed, []byte(id))
	})
	if err != nil {
		fmt.Fprintln(stderr, "llm-proxy:", err, "(nothing was changed)")
		return 1
	}
	fmt.Fprintf(stdout, "re-encrypted %d stored secrets; now make the new key the configured one (%s or %s) and start the proxy\n",
		n, cfg.Security.EncryptionKeyEnv, cfg.Security.EncryptionKeyFile)
	return 0
}
