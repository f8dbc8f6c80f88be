package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestValidateProvider(t *testing.T) {
	ok := ProviderConfig{Name: "groq", Plugin: "openai", BaseURL: "https://api.groq.com/openai/v1", Models: []string{"llama"}}
	if ps := ValidateProvider(ok); ps != nil {
		t.Fatalf("valid provider: %v", ps)
	}
	bad := ProviderConfig{
		Name: "Groq", BaseURL: "http://10.0.0.2", Models: []string{"a", "a", "../admin?x", "gpt 4o"},
		ExtraHosts: []string{"https://x"},
	}
	var keys []string
	for _, p := range ValidateProvider(bad) {
		keys = append(keys, p.Key)
		if p.Key == "models[2]" && !strings.Contains(p.Msg, `"../admin?x" is not a model name`) {
			t.Errorf("models[2]: %s", p.Msg)
		}
	}
	want := []string{"name", "plugin", "base_url", "models[1]", "models[2]", "models[3]", "extra_hosts[0]"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys = %v, want %v", keys, want)
	}
	// Extra hosts may name a port.
	ports := ok
	ports.ExtraHosts = []string{"cdn.example.com:8443", "[2001:db8::1]:443", "2001:db8::2", "files.example.com"}
	if ps := ValidateProvider(ports); ps != nil {
		t.Fatalf("extra hosts with ports: %v", ps)
	}
	ports.ExtraHosts = []string{"cdn.example.com:0", "cdn.example.com:99999", "cdn.example.com:x", "cdn.example.com:08443"}
	if ps := ValidateProvider(ports); len(ps) != 4 {
		t.Fatalf("bad ports: %v", ps)
	}
	// Inside a config file the same problems carry the block's path.
	c := Default()
	c.Providers = []ProviderConfig{ok, bad}
	ps := c.problems()
	if len(ps) == 0 || ps[0].Key != "providers[1].name" {
		t.Fatalf("config problems: %v", ps)
	}
}
