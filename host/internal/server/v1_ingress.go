package server

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/tidwall/gjson"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/ingress"
	"github.com/llm-proxy/llm-proxy/host/internal/keys"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// face is the API a /v1 client speaks. Whatever it is, the request is
// served as one unified chat request (package ingress translates), so
// routing, keys, limits, logging and cost see one shape.
type face uint8

const (
	faceChat      face = iota // OpenAI chat completions (and embeddings)
	faceMessages              // Anthropic's Messages API
	faceResponses             // OpenAI's Responses API
)

// String is the face's name in the request log.
func (f face) String() string {
	switch f {
	case faceMessages:
		return "messages"
	case faceResponses:
		return "responses"
	}
	return "openai"
}

// translate checks a Messages or Responses request and makes the unified
// request of it.
func (s *Server) translate(r *request, body []byte) (model string, stream bool, unified []byte, err *apierror.Error) {
	root, err := parseRoot(body)
	if err != nil {
		return "", false, nil, err
	}
	var bad *ingress.BadRequest
	switch r.face {
	case faceMessages:
		var m *ingress.MessagesRequest
		if m, bad = ingress.ParseMessages(root, false); bad == nil {
			model, stream, unified = m.Model, m.Stream, m.Chat
			r.untranslatable = m.Untranslatable
			// For providers that take the request unchanged; an attempt
			// that sends it copies it (fasthttp reuses the buffer once the
			// handler returns).
			r.native = body
		}
	case faceResponses:
		previous, err := s.previousResponse(r, root)
		if err != nil {
			return "", false, nil, err
		}
		var q *ingress.ResponsesRequest
		if q, bad = ingress.ParseResponses(root, previous); bad == nil {
			model, stream, unified = q.Model, q.Stream, q.Chat
			r.resp = ingress.NewResponses(q, "resp_"+strings.TrimPrefix(r.id, "req_"), r.start.Unix(), q.Store && s.keepsResponses())
			r.conversation = q.Conversation
		}
	}
	if bad != nil {
		return "", false, nil, badRequest(bad)
	}
	return model, stream, unified, nil
}

// badRequest is a request ingress cannot take, as the client's error.
func badRequest(bad *ingress.BadRequest) *apierror.Error {
	if bad.Unsupported {
		return apierror.New(fiber.StatusBadRequest, apierror.CodeUnsupportedContent, bad.Message).WithParam(bad.Param)
	}
	return invalid(bad.Param, bad.Message)
}

// messageID is the id of a translated Messages answer.
func messageID(r *request) string { return "msg_" + strings.TrimPrefix(r.id, "req_") }

// translateAnswer gives a non-streamed answer back in the client's API and
// reads its usage.
func (s *Server) translateAnswer(r *request, sink *bufferSink) []byte {
	var out []byte
	var u ingress.Usage
	switch {
	case r.nativeAttempt:
		out, u = sink.body, ingress.NativeMessageUsage(sink.body)
	case r.face == faceMessages:
		out, u = ingress.ChatToMessage(sink.body, r.model, messageID(r))
	default:
		out, u = r.resp.FromChat(sink.body)
		s.keepResponse(r, out, ingress.AssistantMessage(sink.body))
	}
	if sink.usage != nil && !u.Known {
		r.usage.set(sink.usage)
	} else {
		r.usage.setFrom(u)
	}
	return out
}

// setFrom takes a translated answer's usage.
func (u *usage) setFrom(v ingress.Usage) {
	if v.Known {
		*u = usage{prompt: v.Prompt, completion: v.Completion, cached: v.Cached, known: true}
	}
}

// encoder writes a stream's chunks in the client's API: the translation of
// package ingress, or nil for chat completions (framed as they are).
type encoder interface {
	Chunk(dst, chunk []byte) []byte
	End(dst []byte) []byte
	Fail(dst []byte, status int, code, message string) []byte
	Usage() ingress.Usage
}

func encoderFor(r *request) encoder {
	switch {
	case r.nativeAttempt:
		return &ingress.NativeMessagesStream{}
	case r.face == faceMessages:
		return ingress.NewMessagesStream(messageID(r), r.model)
	case r.face == faceResponses:
		return ingress.NewResponsesStream(r.resp)
	}
	return nil
}

// errorBody is an error's body in the API of the client's path: Anthropic's
// shape under /v1/messages, OpenAI's elsewhere.
func (s *Server) errorBody(c *fiber.Ctx, e *apierror.Error) []byte {
	if messagesPath(c.Path()) {
		id := string(c.Response().Header.Peek("X-Request-Id"))
		if id == "" {
			// Refused before it was served (a wrong key, say): Anthropic's
			// errors always name a request.
			id = newRequestID()
			c.Set("X-Request-Id", id)
		}
		return ingress.MessagesError(nil, e.Status, e.Message, id)
	}
	return e.JSON()
}

func messagesPath(p string) bool {
	return p == "/v1/messages" || strings.HasPrefix(p, "/v1/messages/")
}

// countTokens answers POST /v1/messages/count_tokens with an estimate:
// about four bytes of the translated request per token, the rule the
// proxy's token limits use. Nothing is sent upstream or logged.
func (s *Server) countTokens(c *fiber.Ctx) error {
	root, err := parseRoot(c.Body())
	if err != nil {
		return err
	}
	m, bad := ingress.ParseMessages(root, true)
	if bad != nil {
		return badRequest(bad)
	}
	if k, ok := c.Locals(keyLocal).(*keys.Key); ok && !k.Allows(m.Model) {
		return apierror.New(fiber.StatusForbidden, apierror.CodeModelNotAllowed,
			"This API key may not use the model '"+m.Model+"'.").WithParam("model")
	}
	if _, ok := s.opts.Router.Load().Resolve(m.Model); !ok {
		return apierror.New(fiber.StatusNotFound, apierror.CodeModelNotFound,
			"The model '"+m.Model+"' does not exist or is not served by this proxy.").WithParam("model")
	}
	prompt, _ := estimateTokens(m.Chat)
	// Images count as what Anthropic bills a typical one, not by their
	// base64 size.
	images := int64(0)
	root.Get("messages").ForEach(func(_, msg gjson.Result) bool {
		msg.Get("content").ForEach(func(_, blk gjson.Result) bool {
			if blk.Get("type").Str == "image" {
				images++
				prompt -= int64(len(blk.Raw)) / 4
			}
			return true
		})
		return true
	})
	prompt = max(prompt, 1) + images*1600
	return c.JSON(fiber.Map{"input_tokens": prompt})
}

// pluginHas reports whether the plugin now serving name declares the
// capability.
func (s *Server) pluginHas(name, capability string) bool {
	v, err := s.opts.Plugins.Lookup(name)
	return err == nil && v.Manifest.Has(capability)
}

// ResponseStore keeps the Responses API's responses (store.Store).
type ResponseStore interface {
	SaveResponse(ctx context.Context, r store.StoredResponse) error
	LoadResponse(ctx context.Context, id, keyID string, now int64) (store.StoredResponse, error)
	DeleteResponse(ctx context.Context, id, keyID string) error
}

func (s *Server) keepsResponses() bool { return s.opts.Responses != nil && s.opts.ResponsesTTL > 0 }

// previousResponse is the conversation of the response a Responses request
// continues, "" when it continues none. Only the key that made a response
// may continue it.
func (s *Server) previousResponse(r *request, root gjson.Result) (string, *apierror.Error) {
	id, ok := ingress.PreviousID(root)
	switch {
	case !ok:
		return "", invalid("previous_response_id", "Invalid 'previous_response_id': expected a response id.")
	case id == "":
		return "", nil
	case !s.keepsResponses():
		return "", apierror.New(fiber.StatusBadRequest, apierror.CodePreviousResponseNotFound,
			"Previous response with id '"+id+"' not found: this proxy keeps no responses ([responses] store is off). Send the whole conversation in 'input'.").WithParam("previous_response_id")
	}
	sr, err := s.opts.Responses.LoadResponse(context.Background(), id, r.keyID, time.Now().UnixMilli())
	switch {
	case errors.Is(err, store.ErrNoResponse):
		return "", apierror.New(fiber.StatusBadRequest, apierror.CodePreviousResponseNotFound,
			"Previous response with id '"+id+"' not found.").WithParam("previous_response_id")
	case err != nil:
		s.log.Error("previous response", "id", id, "err", err)
		return "", apierror.New(fiber.StatusInternalServerError, apierror.CodeInternalError, "The proxy could not read the previous response.")
	}
	return sr.Messages, nil
}

// keepResponse keeps an answered Responses request when it asked to be
// kept: its conversation with the answer (assistant, a chat message) for
// a request that continues it, and the Response object (final) for GET.
// It runs before the answer's end is sent, so a client can continue the
// response as soon as it has it.
func (s *Server) keepResponse(r *request, final, assistant []byte) {
	if r.resp == nil || !r.resp.Stored || len(final) == 0 {
		return
	}
	if n := len(r.conversation) + 1 + len(assistant) + len(final); s.opts.MaxBodyBytes > 0 && n > s.opts.MaxBodyBytes {
		// Continuing it would send more than a client may: each kept turn
		// holds the whole conversation so far, and this bounds them.
		s.log.Warn("response not kept: the conversation is over server.max_body_bytes", "id", r.resp.ID, "bytes", n)
		return
	}
	msgs := make([]byte, 0, len(r.conversation)+1+len(assistant))
	msgs = append(append(append(msgs, r.conversation...), ','), assistant...)
	now := time.Now()
	err := s.opts.Responses.SaveResponse(context.Background(), store.StoredResponse{
		ID: r.resp.ID, KeyID: r.keyID, Model: r.model, CreatedAt: r.start.UnixMilli(),
		ExpiresAt: now.Add(s.opts.ResponsesTTL).UnixMilli(), Messages: string(msgs), Response: string(final),
	})
	if err != nil {
		s.log.Warn("response not kept", "id", r.resp.ID, "err", err)
	}
}

// getResponse answers GET /v1/responses/{id}: a kept response of the
// caller's key.
func (s *Server) getResponse(c *fiber.Ctx) error {
	id := c.Params("id")
	if !s.keepsResponses() {
		return responseNotFound(id)
	}
	sr, err := s.opts.Responses.LoadResponse(context.Background(), id, keyID(c), time.Now().UnixMilli())
	if errors.Is(err, store.ErrNoResponse) {
		return responseNotFound(id)
	}
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.SendString(sr.Response)
}

// deleteResponse answers DELETE /v1/responses/{id}.
func (s *Server) deleteResponse(c *fiber.Ctx) error {
	id := c.Params("id")
	if !s.keepsResponses() {
		return responseNotFound(id)
	}
	err := s.opts.Responses.DeleteResponse(context.Background(), id, keyID(c))
	if errors.Is(err, store.ErrNoResponse) {
		return responseNotFound(id)
	}
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"id": id, "object": "response", "deleted": true})
}

func responseNotFound(id string) *apierror.Error {
	return apierror.New(fiber.StatusNotFound, apierror.CodeResponseNotFound, "Response with id '"+id+"' not found.").WithParam("id")
}
