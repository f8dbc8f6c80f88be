package server

import (
	"bytes"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/jsondepth"
)

// refuseDeepJSON answers 400 to a JSON body that nests arrays and objects
// deeper than jsondepth.Max, before any handler parses it: the parsers
// after it recurse once per level. A body that is not JSON (a plugin
// upload) is left alone.
func refuseDeepJSON(c *fiber.Ctx) error {
	body := c.Body()
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) == 0 || (t[0] != '{' && t[0] != '[') {
		return c.Next()
	}
	if !jsondepth.Within(body, jsondepth.Max) {
		return tooDeep()
	}
	return c.Next()
}

func tooDeep() *apierror.Error {
	return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidJSON,
		"The JSON body of your request nests arrays and objects more than "+strconv.Itoa(jsondepth.Max)+" levels deep.")
}
