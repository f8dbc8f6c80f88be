// Package pricing turns a request's token counts into its cost in USD,
// from the price table in the config ([prices."<model>"]).
//
// Prices are per million tokens. Providers that report cached prompt tokens
// (OpenAI's usage.prompt_tokens_details.cached_tokens) count them inside
// prompt_tokens, so the cost is
//
//	(prompt - cached) × input + cached × cached_input + completion × output
//
// and a cached token is never charged twice. Without a cached_input price,
// cached tokens cost the input price.
package pricing

import "strings"

// Price is one model's price per million tokens, in USD.
type Price struct {
	Input       float64
	Output      float64
	CachedInput *float64
}

// Table maps model names to prices.
type Table map[string]Price

// Lookup finds the price of a model: the name the client asked for, then
// without a "<provider>/" prefix, then the name sent upstream.
func (t Table) Lookup(requested, upstream string) (Price, bool) {
	if p, ok := t[requested]; ok {
		return p, true
	}
	if _, rest, ok := strings.Cut(requested, "/"); ok {
		if p, ok := t[rest]; ok {
			return p, true
		}
	}
	p, ok := t[upstream]
	return p, ok
}

// Cost is the USD cost of a request's tokens; 0 for an unknown model.
func (t Table) Cost(requested, upstream string, prompt, completion, cached int64) float64 {
	p, ok := t.Lookup(requested, upstream)
	if !ok {
		return 0
	}
	cached = min(max(cached, 0), max(prompt, 0))
	cachedPrice := p.Input
	if p.CachedInput != nil {
		cachedPrice = *p.CachedInput
	}
	return (float64(prompt-cached)*p.Input + float64(cached)*cachedPrice + float64(completion)*p.Output) / 1e6
}
