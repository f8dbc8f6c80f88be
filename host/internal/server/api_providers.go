package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/tidwall/gjson"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/providers"
	"github.com/llm-proxy/llm-proxy/host/internal/router"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// Providers is what the server needs of the provider manager.
type Providers interface {
	List() []providers.Info
	Get(name string) (providers.Info, error)
	Create(ctx context.Context, req providers.CreateRequest) (providers.Info, error)
	Update(ctx context.Context, name string, p providers.Patch) (providers.Info, error)
	Delete(ctx context.Context, name string) (providers.Info, error)
}

// providerTestTimeout bounds a connection test: the dashboard waits for it.
const providerTestTimeout = 10 * time.Second

func (s *Server) providerRoutes(api fiber.Router) {
	api.Get("/providers", s.listProviders)
	api.Post("/providers", s.createProvider)
	api.Get("/providers/:name", s.getProvider)
	api.Patch("/providers/:name", s.updateProvider)
	api.Delete("/providers/:name", s.deleteProvider)
	api.Post("/providers/:name/test", s.testProvider)
}

// invalidError is a 400 listing every problem of a definition, with the
// first one's field as the param.
func invalidError(code apierror.Code, inv *providers.InvalidError) *apierror.Error {
	msgs := make([]string, len(inv.Problems))
	for i, p := range inv.Problems {
		msgs[i] = p.Error()
	}
	return apierror.New(fiber.StatusBadRequest, code, strings.Join(msgs, "; ")).WithParam(inv.Problems[0].Key)
}

func providerError(err error) error {
	var inv *providers.InvalidError
	switch {
	case errors.As(err, &inv):
		return invalidError(apierror.CodeInvalidProvider, inv)
	case errors.Is(err, providers.ErrNotFound):
		return apierror.New(fiber.StatusNotFound, apierror.CodeProviderNotFound, "No provider has that name.")
	case errors.Is(err, providers.ErrExists):
		return apierror.New(fiber.StatusConflict, apierror.CodeProviderExists, "A provider with that name already exists.").WithParam("name")
	case errors.Is(err, providers.ErrReadOnly):
		return apierror.New(fiber.StatusConflict, apierror.CodeProviderReadOnly,
			"This provider is defined in the config file; change it there and restart the proxy.")
	}
	return err // logged by handleError, answered as a bare 500
}

func (s *Server) getProvider(c *fiber.Ctx) error {
	p, err := s.opts.Providers.Get(c.Params("name"))
	if err != nil {
		return providerError(err)
	}
	return c.JSON(p)
}

func (s *Server) createProvider(c *fiber.Ctx) error {
	var req providers.CreateRequest
	if err := decodeStrict(c.Body(), &req); err != nil {
		return err
	}
	p, err := s.opts.Providers.Create(context.Background(), req)
	if err != nil {
		return providerError(err)
	}
	return c.Status(fiber.StatusCreated).JSON(p)
}

func (s *Server) updateProvider(c *fiber.Ctx) error {
	var patch providers.Patch
	if err := decodeStrict(c.Body(), &patch); err != nil {
		return err
	}
	p, err := s.opts.Providers.Update(context.Background(), c.Params("name"), patch)
	if err != nil {
		return providerError(err)
	}
	return c.JSON(p)
}

func (s *Server) deleteProvider(c *fiber.Ctx) error {
	p, err := s.opts.Providers.Delete(context.Background(), c.Params("name"))
	if err != nil {
		return providerError(err)
	}
	return c.JSON(p)
}

// providerTest is the answer of a connection test.
type providerTest struct {
	OK        bool            `json:"ok"`
	LatencyMS float64         `json:"latency_ms"`
	Models    []string        `json:"models,omitempty"`
	Error     json.RawMessage `json:"error,omitempty"` // OpenAI's error object
}

// testProvider asks the provider's plugin for the upstream's model list,
// the cheapest call that proves the base URL, the network grant and the
// credentials. The outcome is the answer's body, not its status.
func (s *Server) testProvider(c *fiber.Ctx) error {
	name := c.Params("name")
	info, err := s.opts.Providers.Get(name)
	if err != nil {
		return providerError(err)
	}
	var p *router.Provider
	for _, rp := range s.opts.Router.Load().Providers() {
		if rp.Name == name {
			p = rp
			break
		}
	}
	fail := func(e *apierror.Error, latency time.Duration) error {
		return c.JSON(providerTest{LatencyMS: ms(latency), Error: json.RawMessage(gjson.GetBytes(e.JSON(), "error").Raw)})
	}
	if p == nil {
		msg := "The provider is not served."
		if info.Error != "" {
			msg = "The provider is " + info.Error + "."
		}
		return fail(apierror.New(fiber.StatusServiceUnavailable, apierror.CodeProviderNotServed, msg), 0)
	}
	r := &request{id: newRequestID(), keyID: keyID(c), start: time.Now(), op: abi.OpModels, provider: p}
	sink := newBufferSink()
	st, cerr := s.open(r, nil, sink)
	if cerr != nil {
		return fail(cerr, time.Since(r.start))
	}
	timer := time.NewTimer(providerTestTimeout)
	defer timer.Stop()
	select {
	case <-sink.done:
	case <-timer.C:
		st.Cancel()
		<-sink.done
		return fail(apierror.New(fiber.StatusGatewayTimeout, apierror.CodeProviderTimeout, "The provider did not answer within "+providerTestTimeout.String()+"."), time.Since(r.start))
	}
	latency := time.Since(r.start)
	if err := sink.outcome(); err != nil {
		return fail(err, latency)
	}
	models := []string{}
	for _, id := range gjson.GetBytes(sink.body, "data.#.id").Array() {
		models = append(models, id.String())
	}
	return c.JSON(providerTest{OK: true, LatencyMS: ms(latency), Models: models})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// decodeStrict decodes a JSON object into v, refusing unknown fields and
// values of the wrong type with a 400 invalid_provider that names the
// field.
func decodeStrict(body []byte, v any) *apierror.Error {
	return decodeStrictAs(body, v, apierror.CodeInvalidProvider)
}

// decodeStrictAs is decodeStrict with code for a bad field.
func decodeStrictAs(body []byte, v any, code apierror.Code) *apierror.Error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidJSON, "The body must hold one JSON object and nothing after it.")
		}
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidJSON, "The body must be a JSON object.")
	case errors.As(err, &typeErr):
		return apierror.New(fiber.StatusBadRequest, code,
			fmt.Sprintf("%s: must be %s, got a JSON %s", typeErr.Field, jsonKind(typeErr.Field, typeErr.Type.String()), typeErr.Value)).WithParam(typeErr.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return apierror.New(fiber.StatusBadRequest, code, field+": unknown field").WithParam(field)
	}
	return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidJSON, "The body must be a JSON object: "+jsonProblem(err))
}

// jsonKind names the type of a field of the request structs the way JSON
// would. The decoder reports a bad element of a list under the list's name
// with the element's type.
func jsonKind(field, goType string) string {
	if field == "models" || field == "extra_hosts" {
		return "an array of strings"
	}
	switch strings.TrimPrefix(goType, "*") {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "[]string":
		return "an array of strings"
	case "map[string]interface {}":
		return "an object"
	case "int":
		return "a whole number"
	}
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.Contains(goType, "."):
		return "an object"
	}
	return "a " + goType
}

// jsonProblem describes a syntax error without echoing the body.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return "the body is empty."
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the body ends too early."
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d.", syn.Offset)
	}
	return "it could not be read."
}
