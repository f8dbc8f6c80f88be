package server

import (
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
)

// Settings are the instance settings an admin may change at run time.
type Settings struct {
	// RetentionDays: request log rows older than this are pruned; 0 keeps
	// them forever.
	RetentionDays int `json:"retention_days"`
	// LogBodies: request and response bodies are stored with each row.
	LogBodies bool `json:"log_bodies"`
	// MaxBodyBytes and RedactFields come from config.toml and are shown
	// for reference.
	MaxBodyBytes int      `json:"max_body_bytes"`
	RedactFields []string `json:"redact_fields"`
	// Changed lists the settings whose value was set through the API and
	// is kept in the database, where it wins over config.toml.
	Changed []string `json:"changed"`
}

// SettingsPatch is a PATCH /api/settings body: fields left out stay.
type SettingsPatch struct {
	RetentionDays *int  `json:"retention_days"`
	LogBodies     *bool `json:"log_bodies"`
}

// ErrBadSetting wraps a refused setting value; its message names the
// setting.
var ErrBadSetting = errors.New("invalid setting")

// SettingsStore reads and changes the settings.
type SettingsStore interface {
	Settings() Settings
	UpdateSettings(p SettingsPatch) (Settings, error)
}

func (s *Server) getSettings(c *fiber.Ctx) error {
	return c.JSON(s.opts.Settings.Settings())
}

func (s *Server) patchSettings(c *fiber.Ctx) error {
	var p SettingsPatch
	if err := decodeJSON(c, &p, `{"retention_days": 30, "log_bodies": true}`); err != nil {
		return err
	}
	out, err := s.opts.Settings.UpdateSettings(p)
	if errors.Is(err, ErrBadSetting) {
		return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidSetting, err.Error())
	}
	if err != nil {
		return err
	}
	s.log.Info("settings changed", "retention_days", out.RetentionDays, "log_bodies", out.LogBodies)
	return c.JSON(out)
}
