package server

import (
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// uploadPlugin answers PUT /api/plugins/{file}: the body is a .wasm file,
// installed into the plugin folder exactly as a file dropped there. A body
// that is not a plugin at all (no wasm header or no manifest) is refused
// before the folder is touched; anything else is written and loaded, and
// the answer is the file's entry of GET /api/plugins, whose state and
// last_error say how the load went.
func (s *Server) uploadPlugin(c *fiber.Ctx) error {
	file := c.Params("file")
	body := c.Body()
	if len(body) == 0 {
		return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidPlugin, "The body must be the plugin's .wasm file.")
	}
	raw, err := abi.ManifestFromWasm(body)
	if err == nil {
		_, err = abi.ParseManifest(raw)
	}
	if err != nil {
		return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidPlugin,
			"This file is not an LLM Proxy plugin: "+err.Error()+". Build plugins with the SDK and pack them with llmproxy-pack.")
	}
	in, err := s.opts.Plugins.Install(c.UserContext(), file, body)
	if errors.Is(err, plugin.ErrBadFileName) {
		return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidFileName, "Invalid file name: "+err.Error()+".").WithParam("file")
	}
	if err != nil {
		return err
	}
	s.log.Info("plugin uploaded", "file", file, "bytes", len(body), "state", in.State, "version", in.Version)
	return c.JSON(in)
}
