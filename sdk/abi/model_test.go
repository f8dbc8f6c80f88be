package abi

import (
	"strings"
	"testing"
)

func TestValidModel(t *testing.T) {
	for _, m := range []string{
		"gpt-4o-mini", "ft:gpt-4o-mini:acme:custom:abc123", "claude-3-5-sonnet@20240620",
		"gemini-1.5-pro", "tunedModels/my-model", "openrouter/anthropic/claude-3.5", "llama3.1+q4_K_M",
		strings.Repeat("a", MaxModelLen),
	} {
		if !ValidModel(m) {
			t.Errorf("ValidModel(%q) = false", m)
		}
	}
	for _, m := range []string{
		"", strings.Repeat("a", MaxModelLen+1),
		"gem/../../admin/delete-everything?confirm=yes&x=", "..", ".", "a/../b", "a/./b", "a//b", "/a", "a/",
		"model?x=1", "model#frag", "a b", "a\tb", "a\nb", "a\x00b", "a%2e%2e", "a\\b", "modèle", `a"b`, "a;b", "a=b", "a&b",
	} {
		if ValidModel(m) {
			t.Errorf("ValidModel(%q) = true", m)
		}
	}
}
