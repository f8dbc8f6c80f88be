package server

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/tidwall/gjson"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/keys"
	"github.com/llm-proxy/llm-proxy/host/internal/limits"
)

// estimateTokens is a request's tokens before it runs: a token for every
// four bytes of its body, plus the completion it allows. The upstream's
// usage replaces it when the request ends.
func estimateTokens(body []byte) (prompt, completion int64) {
	prompt = int64(len(body)+3) / 4
	r := gjson.GetManyBytes(body, "max_tokens", "max_completion_tokens")
	completion = max(r[0].Int(), r[1].Int(), 0)
	return prompt, completion
}

// admit counts the request against its key's limits; a refusal is the
// client's answer. Every answer of a key with limits carries the
// x-ratelimit-* headers.
func (s *Server) admit(c *fiber.Ctx, r *request, k *keys.Key, body []byte) *apierror.Error {
	if s.opts.Limits == nil || !k.Limited() {
		return nil
	}
	prompt, completion := estimateTokens(body)
	req := limits.Request{KeyID: k.ID, Limits: k.Limits, Tokens: prompt + completion}
	if k.BudgetUSD > 0 {
		req.Cost = s.opts.Prices.Cost(r.model, r.model, prompt, completion, 0)
	}
	t, st := s.opts.Limits.Admit(context.Background(), req)
	rateHeaders(c, st)
	if st.Refused == "" {
		r.ticket = t
		return nil
	}
	s.opts.Metrics.Refused(string(st.Refused))
	var e *apierror.Error
	switch st.Refused {
	case limits.RPM:
		e = apierror.New(fiber.StatusTooManyRequests, apierror.CodeRateLimitExceeded,
			"Rate limit reached for this API key: "+strconv.Itoa(k.RPM)+" requests per minute. Retry after the time in Retry-After.")
		e.Type = "requests"
	case limits.TPM:
		e = apierror.New(fiber.StatusTooManyRequests, apierror.CodeRateLimitExceeded,
			"Rate limit reached for this API key: "+strconv.Itoa(k.TPM)+" tokens per minute, and this request is estimated at "+
				strconv.FormatInt(prompt+completion, 10)+" (its body's length / 4 plus max_tokens).")
		e.Type = "tokens"
	case limits.Parallel:
		e = apierror.New(fiber.StatusTooManyRequests, apierror.CodeConcurrencyLimitExceeded,
			"This API key may have "+strconv.Itoa(k.MaxParallel)+" requests in progress at once; wait for one to finish.")
		e.Type = "requests"
	default:
		e = apierror.New(fiber.StatusTooManyRequests, apierror.CodeBudgetExceeded,
			"This API key has spent its budget of $"+strconv.FormatFloat(k.BudgetUSD, 'f', -1, 64)+" for the "+
				k.BudgetPeriod+"; it resets at "+st.BudgetEnds.Format(time.RFC3339)+".")
		e.Type = "insufficient_quota"
	}
	if st.RetryAfter > 0 {
		e.RetryAfter = strconv.Itoa(int(math.Ceil(st.RetryAfter.Seconds())))
	}
	return e
}

// rateHeaders are OpenAI's x-ratelimit-* headers for the limits set.
func rateHeaders(c *fiber.Ctx, st limits.Status) {
	if st.LimitRequests > 0 {
		c.Set("x-ratelimit-limit-requests", strconv.FormatInt(st.LimitRequests, 10))
		c.Set("x-ratelimit-remaining-requests", strconv.FormatInt(st.RemainingRequests, 10))
		c.Set("x-ratelimit-reset-requests", limits.Reset(st.ResetRequests))
	}
	if st.LimitTokens > 0 {
		c.Set("x-ratelimit-limit-tokens", strconv.FormatInt(st.LimitTokens, 10))
		c.Set("x-ratelimit-remaining-tokens", strconv.FormatInt(st.RemainingTokens, 10))
		c.Set("x-ratelimit-reset-tokens", limits.Reset(st.ResetTokens))
	}
}
