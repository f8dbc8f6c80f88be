package server

import (
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/secrets"
	"github.com/llm-proxy/llm-proxy/host/internal/users"
)

// userError maps the users package's errors to API errors; param names the
// field a password error is about.
func userError(err error, param string) error {
	switch {
	case errors.Is(err, users.ErrNotFound):
		return apierror.New(fiber.StatusNotFound, apierror.CodeUserNotFound, "No user has that username.")
	case errors.Is(err, users.ErrExists):
		return apierror.New(fiber.StatusConflict, apierror.CodeUserExists, "A user with that username exists.").WithParam("username")
	case errors.Is(err, users.ErrBadUsername):
		return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidRequest, "Invalid username: "+users.ErrBadUsername.Error()+".").WithParam("username")
	case errors.Is(err, users.ErrBadRole):
		return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidRequest, "Invalid role: "+users.ErrBadRole.Error()+".").WithParam("role")
	case errors.Is(err, secrets.ErrPasswordTooShort), errors.Is(err, secrets.ErrPasswordTooLong):
		return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidRequest, "Passwords are 8 to 72 bytes long.").WithParam(param)
	case errors.Is(err, users.ErrLastAdmin):
		return apierror.New(fiber.StatusConflict, apierror.CodeLastAdmin, "This is the only enabled admin; make another user an admin first.")
	}
	return err
}

func (s *Server) listUsers(c *fiber.Ctx) error {
	list, err := s.opts.Users.List(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"object": "list", "data": list})
}

func (s *Server) getUser(c *fiber.Ctx) error {
	u, err := s.opts.Users.Get(c.UserContext(), c.Params("username"))
	if err != nil {
		return userError(err, "")
	}
	return c.JSON(u)
}

func (s *Server) createUser(c *fiber.Ctx) error {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Role     string `json:"role"`
	}
	if err := decodeJSON(c, &req, `{"username": "bob", "password": "...", "role": "viewer"}`); err != nil {
		return err
	}
	if req.Role == "" {
		req.Role = users.RoleViewer
	}
	u, err := s.opts.Users.Create(c.UserContext(), req.Username, req.Password, req.Role, time.Now())
	if err != nil {
		return userError(err, "password")
	}
	return c.Status(fiber.StatusCreated).JSON(u)
}

// updateUser answers PATCH /api/users/{username}: each field given
// changes. A new password or disabling ends the user's sessions; a role
// change applies to their next call.
func (s *Server) updateUser(c *fiber.Ctx) error {
	var req struct {
		Password *string `json:"password"`
		Role     *string `json:"role"`
		Disabled *bool   `json:"disabled"`
	}
	if err := decodeJSON(c, &req, `{"password": "...", "role": "admin", "disabled": false}`); err != nil {
		return err
	}
	// Check what can be checked before changing anything, so a bad
	// field does not leave the other changes half made.
	if req.Role != nil && *req.Role != users.RoleAdmin && *req.Role != users.RoleViewer {
		return userError(users.ErrBadRole, "")
	}
	if req.Password != nil && (len(*req.Password) < 8 || len(*req.Password) > 72) {
		return userError(secrets.ErrPasswordTooShort, "password")
	}
	ctx, now, name := c.UserContext(), time.Now(), c.Params("username")
	u, err := s.opts.Users.Get(ctx, name)
	if err != nil {
		return userError(err, "")
	}
	if req.Role != nil {
		if err := s.opts.Users.SetRole(ctx, name, *req.Role, now); err != nil {
			return userError(err, "")
		}
	}
	if req.Disabled != nil {
		if err := s.opts.Users.SetDisabled(ctx, name, *req.Disabled, now); err != nil {
			return userError(err, "")
		}
		if *req.Disabled {
			if _, err := s.opts.Sessions.RevokeUser(ctx, u.ID); err != nil {
				return err
			}
		}
	}
	if req.Password != nil {
		if err := s.opts.Users.SetPassword(ctx, name, *req.Password, now); err != nil {
			return userError(err, "password")
		}
		if _, err := s.opts.Sessions.RevokeUser(ctx, u.ID); err != nil {
			return err
		}
	}
	if u, err = s.opts.Users.Get(ctx, name); err != nil {
		return userError(err, "")
	}
	return c.JSON(u)
}

func (s *Server) deleteUser(c *fiber.Ctx) error {
	ctx, name := c.UserContext(), c.Params("username")
	u, err := s.opts.Users.Get(ctx, name)
	if err != nil {
		return userError(err, "")
	}
	if err := s.opts.Users.Delete(ctx, name); err != nil {
		return userError(err, "")
	}
	if _, err := s.opts.Sessions.RevokeUser(ctx, u.ID); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"id": u.ID, "username": u.Username, "deleted": true})
}
