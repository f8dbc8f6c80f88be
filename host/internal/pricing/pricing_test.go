package pricing_test

import (
	"math"
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/pricing"
)

func TestCost(t *testing.T) {
	half := 0.075
	tab := pricing.Table{
		"gpt-4o-mini":  {Input: 0.15, Output: 0.60, CachedInput: &half},
		"claude-x":     {Input: 3, Output: 15},
		"fake/special": {Input: 1, Output: 1},
	}
	cases := []struct {
		name                       string
		requested, upstream        string
		prompt, completion, cached int64
		want                       float64
	}{
		{"plain", "gpt-4o-mini", "gpt-4o-mini", 1_000_000, 1_000_000, 0, 0.75},
		{"cached tokens are inside prompt tokens", "gpt-4o-mini", "gpt-4o-mini", 1_000_000, 0, 400_000, 0.6*0.15 + 0.4*0.075},
		{"no cached price: input price", "claude-x", "claude-x", 1000, 1000, 500, (1000*3 + 1000*15) / 1e6},
		{"provider prefix", "openai/gpt-4o-mini", "gpt-4o-mini", 1_000_000, 0, 0, 0.15},
		{"exact prefixed entry wins", "fake/special", "special", 1_000_000, 0, 0, 1},
		{"unknown model", "mystery", "mystery", 1000, 1000, 0, 0},
		{"cached larger than prompt is capped", "gpt-4o-mini", "gpt-4o-mini", 100, 0, 500, 100 * 0.075 / 1e6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tab.Cost(tc.requested, tc.upstream, tc.prompt, tc.completion, tc.cached)
			if math.Abs(got-tc.want) > 1e-12 {
				t.Fatalf("cost %v, want %v", got, tc.want)
			}
		})
	}
}
