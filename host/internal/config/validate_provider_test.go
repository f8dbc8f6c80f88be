package config

import (
	"reflect"
	"testing"
)

func TestValidateProvider(t *testing.T) {
	ok := ProviderConfig{Name: "groq", Plugin: "openai", BaseURL: "https://api.groq.com/openai/v1", Models: []string{"llama"}}
	if ps := ValidateProvider(ok); ps != nil {
		t.Fatalf("valid provider: %v", ps)
	}
	bad := ProviderConfig{
		Name: "Groq", BaseURL: "http://10.0.0.2", Models: []string{"a", "a"},
		ExtraHosts: []string{"https://x"},
	}
	var keys []string
	for _, p := range ValidateProvider(bad) {
		keys = append(keys, p.Key)
	}
	want := []string{"name", "plugin", "base_url", "models[1]", "extra_hosts[0]"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys = %v, want %v", keys, want)
	}
	// Inside a config file the same problems carry the block's path.
	c := Default()
	c.Providers = []ProviderConfig{ok, bad}
	ps := c.problems()
	if len(ps) == 0 || ps[0].Key != "providers[1].name" {
		t.Fatalf("config problems: %v", ps)
	}
}
