// Command llmproxy-pack stores a plugin manifest in a .wasm file as the
// "llmproxy.manifest" custom section, where the LLM Proxy host reads it
// before compiling the module. It validates the manifest first and replaces
// any manifest section already present.
//
//	llmproxy-pack -manifest manifest.json [-o out.wasm] plugin.wasm
//
// Without -o the input file is rewritten in place (atomically).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

func main() {
	manifestPath := flag.String("manifest", "manifest.json", "the plugin manifest (JSON)")
	out := flag.String("o", "", "output file (default: rewrite the input)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: llmproxy-pack -manifest manifest.json [-o out.wasm] plugin.wasm")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := pack(*manifestPath, flag.Arg(0), *out); err != nil {
		fmt.Fprintln(os.Stderr, "llmproxy-pack:", err)
		os.Exit(1)
	}
}

func pack(manifestPath, in, out string) error {
	m, err := os.ReadFile(manifestPath)
	if err != nil {
		return err
	}
	if _, err := abi.ParseManifest(m); err != nil {
		return fmt.Errorf("%s: %w", manifestPath, err)
	}
	wasm, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	packed, err := abi.WithManifest(wasm, m)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if out == "" {
		out = in
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".pack-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(packed); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}
