package server

import (
	"context"
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/hub"
	"github.com/llm-proxy/llm-proxy/host/internal/keys"
)

// keyWithSecret is a key as returned once, at creation or rotation.
type keyWithSecret struct {
	*keys.Key
	Secret string `json:"key"`
}

func keyError(err error) *apierror.Error {
	switch {
	case errors.Is(err, keys.ErrNotFound):
		return apierror.New(fiber.StatusNotFound, apierror.CodeKeyNotFound, "No API key has that id.")
	case errors.Is(err, keys.ErrBadInput):
		return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidKeyRequest, err.Error())
	}
	return apierror.New(fiber.StatusInternalServerError, apierror.CodeInternalError, "The key could not be changed.")
}

// keyView is a key as the admin API shows it: with its use against its
// limits, when it has any.
type keyView struct {
	*keys.Key
	Usage *keyUsage `json:"usage,omitempty"`
}

type keyUsage struct {
	RequestsLastMinute int64      `json:"requests_last_minute"`
	TokensLastMinute   int64      `json:"tokens_last_minute"`
	InFlight           int        `json:"in_flight"`
	SpentUSD           float64    `json:"spent_usd"`
	BudgetResetsAt     *time.Time `json:"budget_resets_at,omitempty"`
}

func (s *Server) keyView(k *keys.Key) keyView {
	v := keyView{Key: k}
	if s.opts.Limits != nil && k.Limited() {
		st := s.opts.Limits.Usage(k.ID, k.Limits)
		v.Usage = &keyUsage{RequestsLastMinute: st.Requests, TokensLastMinute: st.Tokens, InFlight: st.InFlight, SpentUSD: st.Spent}
		if !st.BudgetEnds.IsZero() {
			v.Usage.BudgetResetsAt = &st.BudgetEnds
		}
	}
	return v
}

func (s *Server) listKeys(c *fiber.Ctx) error {
	list := s.opts.Keys.List()
	out := make([]keyView, len(list))
	for i, k := range list {
		out[i] = s.keyView(k)
	}
	return c.JSON(fiber.Map{"object": "list", "data": out})
}

func (s *Server) createKey(c *fiber.Ctx) error {
	var req keys.CreateRequest
	if err := decodeStrictAs(c.Body(), &req, apierror.CodeInvalidKeyRequest); err != nil {
		if err.Code == apierror.CodeInvalidJSON {
			err.Message = `The body must be JSON: {"name": "...", "models": ["..."], "expires_at": "2030-01-01T00:00:00Z", "rpm": 60, ...}.`
		}
		return err
	}
	secret, k, err := s.opts.Keys.Create(context.Background(), req, time.Now())
	if err != nil {
		return keyError(err)
	}
	s.opts.Hub.Publish(hub.KeyCreated, keyEvent(k))
	return c.Status(fiber.StatusCreated).JSON(keyWithSecret{Key: k, Secret: secret})
}

func (s *Server) revokeKey(c *fiber.Ctx) error {
	k, err := s.opts.Keys.Revoke(context.Background(), c.Params("id"), time.Now())
	if err != nil {
		return keyError(err)
	}
	s.opts.Hub.Publish(hub.KeyRevoked, keyEvent(k))
	return c.JSON(k)
}

func (s *Server) updateKey(c *fiber.Ctx) error {
	var p keys.Patch
	if err := decodeStrictAs(c.Body(), &p, apierror.CodeInvalidKeyRequest); err != nil {
		return err
	}
	k, err := s.opts.Keys.Update(context.Background(), c.Params("id"), p, time.Now())
	if err != nil {
		return keyError(err)
	}
	s.opts.Hub.Publish(hub.KeyUpdated, keyEvent(k))
	return c.JSON(s.keyView(k))
}

func (s *Server) rotateKey(c *fiber.Ctx) error {
	secret, k, err := s.opts.Keys.Rotate(context.Background(), c.Params("id"))
	if err != nil {
		return keyError(err)
	}
	s.opts.Hub.Publish(hub.KeyRotated, keyEvent(k))
	return c.JSON(keyWithSecret{Key: k, Secret: secret})
}

// keyEvent is what the live view learns of a key change: which key, never
// its secret. The page reloads GET /api/keys for the rest.
func keyEvent(k *keys.Key) map[string]string {
	return map[string]string{"id": k.ID, "name": k.Name, "prefix": k.Prefix}
}
