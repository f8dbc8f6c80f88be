// Package fakeupstream runs an in-process stand-in for the OpenAI HTTP API on
// loopback. Integration tests and benchmarks point the gateway's OpenAI plugin
// at it so that traffic can be exercised end to end without the network.
//
// The responses follow the OpenAI wire format closely enough for the official
// openai-go SDK to decode whatever the gateway relays back to it:
//
//   - POST /v1/chat/completions, plain and streamed (server-sent events),
//     including tool calls and the trailing usage chunk of
//     stream_options.include_usage;
//   - POST /v1/embeddings, as float arrays or base64;
//   - GET /v1/models and GET /v1/models/{id}.
//
// It also speaks Anthropic's Messages API at POST /v1/messages (see
// anthropic.go), Google's Gemini API under /v1beta (gemini.go) and Azure
// OpenAI's deployment URLs (azure.go), so those plugins are tested the same
// way.
//
// Replies are deterministic. A chat reply is "echo: " followed by the text of
// the last user message, so a streamed reply can be compared with a plain
// one. A handful of reserved model names make the server misbehave on purpose
// (see the Model* constants) so that failure handling can be tested.
package fakeupstream

import (
	"context"
	"crypto/subtle"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Model names with special behaviour. Any other model name gets the normal
// echo behaviour.
const (
	// ModelFail429 answers 429 with "Retry-After: 7" and a rate-limit error.
	ModelFail429 = "fail-429"
	// ModelFail500 answers 500 with a server_error body.
	ModelFail500 = "fail-500"
	// ModelFail400 answers 400 with an invalid_request_error body.
	ModelFail400 = "fail-400"
	// ModelSlowHeaders waits SlowHeadersDelay before answering, or until the
	// request context ends, whichever comes first.
	ModelSlowHeaders = "slow-headers"
	// ModelStreamErrorMidway, when streaming, sends the role chunk and two
	// content chunks and then drops the TCP connection without finishing the
	// chunked body, so the client reads an unexpected EOF.
	ModelStreamErrorMidway = "stream-error-midway"
	// ModelSlowStream streams SlowStreamChunks content chunks with
	// SlowStreamDelay between them, whatever Options says.
	ModelSlowStream = "slow-stream"
	// ModelBigOutput replies with BigOutputSize bytes of text.
	ModelBigOutput = "big-output"
	// ModelEndlessStream, when streaming, sends content chunks of about
	// 1 KiB as fast as the connection takes them, until the client goes
	// away; EndlessBytes counts what it wrote.
	ModelEndlessStream = "endless-stream"
)

// ImagePath serves ImagePNG (image/png) without any credentials, as a
// public image a client links to would be.
const ImagePath = "/media/cat.png"

// ImagePNG is the image at ImagePath: the 8-byte PNG signature.
var ImagePNG = []byte("\x89PNG\r\n\x1a\n")

// Timings and sizes used by the special models.
const (
	SlowHeadersDelay = 3 * time.Second
	SlowStreamChunks = 200
	SlowStreamDelay  = 50 * time.Millisecond
	BigOutputSize    = 1 << 20
)

// DefaultChunks is the number of content chunks per stream when
// Options.Chunks is zero or negative.
const DefaultChunks = 5

// Options configures a Server. The zero value is usable.
type Options struct {
	// APIKey, when non-empty, must be presented by every request as
	// "Authorization: Bearer <APIKey>"; other requests get a 401 error.
	APIKey string
	// ChunkDelay is the pause between two stream chunks. Zero means none.
	ChunkDelay time.Duration
	// Chunks is how many content chunks a stream carries (DefaultChunks if
	// zero or negative). The reply is cut into that many pieces of similar
	// byte length on rune boundaries; a reply shorter than Chunks yields some
	// empty pieces. Tool-call streams ignore it.
	Chunks int
	// DisableRecording stops the server from keeping every request for
	// Requests. Long benchmarks should set it so memory does not grow.
	DisableRecording bool
	// Faults make chat requests fail or wait; see Faults.
	Faults Faults
	// ExtraKeys are accepted besides APIKey (when that is set).
	ExtraKeys []string
}

// Recorded is one request as the server received it.
type Recorded struct {
	Method string
	Path   string
	Query  string // raw query string, without '?'
	Header http.Header
	Body   []byte
}

// Server is a running fake upstream.
type Server struct {
	// URL is the base URL including the /v1 suffix, for example
	// "http://127.0.0.1:40123/v1". It is what an OpenAI client takes as its
	// base URL.
	URL string

	opts       Options
	chunks     int
	wantAuth   []byte // "Bearer <key>", nil when auth is off
	handler    http.Handler
	httpServer *http.Server

	// baseCtx is the parent of every request context of the server started by
	// Start; Close cancels it so that sleeping handlers wake up.
	baseCtx    context.Context
	cancelBase context.CancelFunc

	seq      atomic.Uint64
	chats    atomic.Int64 // chat completion requests received
	canceled atomic.Int64
	endless  atomic.Int64 // bytes written by endless streams

	// Tokens reported in chat answers: see Usage.
	promptReported, completionReported atomic.Int64

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
	requests []Recorded
	byKey    map[string]int64 // authenticated requests per key

	closeOnce sync.Once
}

// Start listens on a random loopback port and serves the fake API until Close
// is called.
func Start(opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := newServer(opts)
	s.URL = "http://" + ln.Addr().String() + "/v1"
	s.httpServer = &http.Server{
		Handler:           http.HandlerFunc(s.serveTracked),
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
	}
	go func() { _ = s.httpServer.Serve(ln) }()
	return s, nil
}

func newServer(opts Options) *Server {
	s := &Server{opts: opts, chunks: opts.Chunks}
	if s.chunks <= 0 {
		s.chunks = DefaultChunks
	}
	if opts.APIKey != "" {
		s.wantAuth = []byte("Bearer " + opts.APIKey)
	}
	s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
	s.handler = http.HandlerFunc(s.serve)
	return s
}

// Close stops the listener, drops open connections and waits for the
// handlers started by the server's own listener to return. It is safe to call
// more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancelBase()
		if s.httpServer != nil {
			_ = s.httpServer.Close()
		}
		s.inflight.Wait()
	})
}

// Handler returns the handler behind the server, sharing its recording and
// counters, so that a benchmark can mount the fake in its own server. Paths
// are matched as they arrive, so mount it at the root.
func (s *Server) Handler() http.Handler { return s.handler }

// Requests returns a copy of the list of requests received so far, oldest
// first. The header maps and bodies are shared with the server and must not
// be modified.
func (s *Server) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Recorded, len(s.requests))
	copy(out, s.requests)
	return out
}

// Canceled reports how many streaming requests were abandoned by their client
// before the stream was complete, and how many chat requests, streamed or
// not, were abandoned while the slow-headers model was still waiting.
// Streams cut by the server itself (stream-error-midway, Close) are not
// counted.
func (s *Server) Canceled() int64 { return s.canceled.Load() }

// EndlessBytes is the number of bytes the endless-stream model has written
// (accepted by the connection) so far, over all its streams.
func (s *Server) EndlessBytes() int64 { return s.endless.Load() }

// Usage returns the prompt and completion tokens the server has reported
// in chat usage objects: those of non-stream answers, and those of the
// usage chunks of streams, counted once the chunk was written.
func (s *Server) Usage() (prompt, completion int64) {
	return s.promptReported.Load(), s.completionReported.Load()
}

// reported counts a usage object sent.
func (s *Server) reported(a *chatAnswer) {
	s.promptReported.Add(int64(a.promptTokens))
	s.completionReported.Add(int64(a.completionTokens))
}

// serveTracked is the handler of the server's own listener: it refuses work
// once Close has begun and lets Close wait for running handlers.
func (s *Server) serveTracked(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "The fake upstream is shutting down.", "server_error", "", "")
		return
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()
	s.serve(w, r)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Could not read the request body.", typeInvalidRequest, "", "")
		return
	}
	if !s.opts.DisableRecording {
		rec := Recorded{
			Method: r.Method,
			Path:   r.URL.Path,
			Query:  r.URL.RawQuery,
			Header: r.Header.Clone(),
			Body:   body,
		}
		s.mu.Lock()
		s.requests = append(s.requests, rec)
		s.mu.Unlock()
	}

	if r.URL.Path == ImagePath {
		// A public image a client links to: no credentials needed.
		w.Header().Set("Content-Type", "image/png")
		w.Write(ImagePNG)
		return
	}
	if s.serveAnthropic(w, r, body) || s.serveGemini(w, r, body) || s.serveAzure(w, r, body) {
		return
	}
	if !s.checkAuth(w, r) {
		return
	}

	path := r.URL.Path
	switch {
	case path == "/v1/chat/completions" && r.Method == http.MethodPost:
		if !s.fault(w, r) {
			s.handleChat(w, r, body)
		}
	case path == "/v1/embeddings" && r.Method == http.MethodPost:
		s.handleEmbeddings(w, r, body)
	case path == "/v1/models" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, modelListBody, s.requestID())
	case strings.HasPrefix(path, "/v1/models/") && r.Method == http.MethodGet:
		s.handleModel(w, strings.TrimPrefix(path, "/v1/models/"))
	default:
		writeError(w, http.StatusNotFound, "Invalid URL ("+r.Method+" "+path+")", typeInvalidRequest, "", "")
	}
}

// checkAuth enforces Options.APIKey and writes the 401 itself on failure.
func (s *Server) checkAuth(w http.ResponseWriter, r *http.Request) bool {
	if s.wantAuth == nil {
		return true
	}
	got := r.Header.Get("Authorization")
	if got == "" {
		writeError(w, http.StatusUnauthorized,
			"You didn't provide an API key. Send it in the Authorization header as 'Bearer YOUR_KEY'.",
			typeInvalidRequest, "", "")
		return false
	}
	key := strings.TrimPrefix(got, "Bearer ")
	if subtle.ConstantTimeCompare([]byte(got), s.wantAuth) != 1 && !slices.Contains(s.opts.ExtraKeys, key) {
		writeError(w, http.StatusUnauthorized, "Incorrect API key provided.", typeInvalidRequest, "", "invalid_api_key")
		return false
	}
	s.mu.Lock()
	if s.byKey == nil {
		s.byKey = map[string]int64{}
	}
	s.byKey[key]++
	s.mu.Unlock()
	if f := s.opts.Faults; f.RateLimitKey != "" && key == f.RateLimitKey {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		writeError(w, http.StatusTooManyRequests, "Rate limit reached for this key.", "requests", "", "rate_limit_exceeded")
		return false
	}
	return true
}

// RequestsWithKey is how many authenticated requests came with key.
func (s *Server) RequestsWithKey(key string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byKey[key]
}

// failByModel answers for the models that always fail. It reports whether it
// wrote a response.
func failByModel(w http.ResponseWriter, model string) bool {
	switch model {
	case ModelFail429:
		w.Header().Set("Retry-After", "7")
		writeError(w, http.StatusTooManyRequests, "Rate limit reached", "requests", "", "rate_limit_exceeded")
	case ModelFail500:
		writeError(w, http.StatusInternalServerError, "The server had an error", "server_error", "", "")
	case ModelFail400:
		writeError(w, http.StatusBadRequest, "Invalid request: the fake upstream rejects this model on purpose.", typeInvalidRequest, "model", "")
	case ModelContextOverflow:
		writeError(w, http.StatusBadRequest, "This model's maximum context length is 16 tokens. However, your messages resulted in 17 tokens.",
			typeInvalidRequest, "messages", "context_length_exceeded")
	default:
		return false
	}
	return true
}

// sleepCtx waits for d or until ctx ends; it reports whether the full wait
// happened.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// clientGone records an abandoned stream unless the cause is our own Close.
func (s *Server) clientGone() {
	if s.baseCtx.Err() == nil {
		s.canceled.Add(1)
	}
}

func (s *Server) requestID() string {
	return "req_fake" + strconv.FormatUint(s.seq.Add(1), 10)
}

// abortConnection makes the client see the response end without its proper
// terminator. Over HTTP/1 the connection is hijacked and closed; where
// hijacking is not possible (HTTP/2) the handler is aborted instead, which
// resets the stream.
func abortConnection(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	conn, _, err := rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
