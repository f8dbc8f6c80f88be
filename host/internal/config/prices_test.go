package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrices(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg, err := Load(write(`
[prices."gpt-4o-mini"]
input = 0.15
output = 0.6
cached_input = 0.075
[prices."openai/gpt-4o"]
input = 2
output = 10
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Prices["gpt-4o-mini"]
	if p.Input != 0.15 || p.Output != 0.6 || p.CachedInput == nil || *p.CachedInput != 0.075 {
		t.Fatalf("%+v", p)
	}
	if q := cfg.Prices["openai/gpt-4o"]; q.Input != 2 || q.Output != 10 || q.CachedInput != nil {
		t.Fatalf("integers as prices: %+v", q)
	}
	_, err = Load(write("[prices.\"m\"]\ninput = -1\nouptut = 2\n"), nil)
	if err == nil || !strings.Contains(err.Error(), `prices."m"`) || !strings.Contains(err.Error(), "ouptut") {
		t.Fatalf("bad prices: %v", err)
	}
}
