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
		return apierror.New(fiber.StatusNotFound, "key_not_found", "No API key has that id.")
	case errors.Is(err, keys.ErrBadInput):
		return apierror.New(fiber.StatusBadRequest, "invalid_key_request", err.Error())
	}
	return apierror.New(fiber.StatusInternalServerError, "internal_error", "The key could not be changed.")
}

func (s *Server) listKeys(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"object": "list", "data": s.opts.Keys.List()})
}

func (s *Server) createKey(c *fiber.Ctx) error {
	var req keys.CreateRequest
	if err := c.BodyParser(&req); err != nil {
		return apierror.New(fiber.StatusBadRequest, "invalid_json",
			`The body must be JSON: {"name": "...", "models": ["..."], "expires_at": "2030-01-01T00:00:00Z"}.`)
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
