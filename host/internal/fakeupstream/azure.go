package fakeupstream

import (
	"net/http"
	"strings"
)

// The same Server also answers Azure OpenAI's deployment URLs, so the
// azure plugin can be tested end to end:
//
//	POST /openai/deployments/{deployment}/chat/completions?api-version=...
//	POST /openai/deployments/{deployment}/embeddings?api-version=...
//	GET  /openai/models?api-version=...
//
// and the v1 API, where the body's model names the deployment:
//
//	POST /openai/v1/chat/completions
//	POST /openai/v1/embeddings
//	GET  /openai/v1/models
//
// A request needs an api-version (except on the v1 API) and, when
// Options.APIKey is set, "api-key: <APIKey>" (Azure answers 401 otherwise).
// The body is served by the OpenAI side, so the model in the body picks the
// behaviour.

// serveAzure answers the Azure paths; it reports whether the request was
// one.
func (s *Server) serveAzure(w http.ResponseWriter, r *http.Request, body []byte) bool {
	path := r.URL.Path
	if !strings.HasPrefix(path, "/openai/") {
		return false
	}
	if s.opts.APIKey != "" && r.Header.Get("api-key") != s.opts.APIKey {
		writeError(w, http.StatusUnauthorized, "Access denied due to invalid subscription key or wrong API endpoint.", "", "", "401")
		return true
	}
	if op, ok := strings.CutPrefix(path, "/openai/v1/"); ok {
		switch {
		case op == "models" && r.Method == http.MethodGet:
			writeJSON(w, http.StatusOK, modelListBody, s.requestID())
		case op == "chat/completions" && r.Method == http.MethodPost:
			s.handleChat(w, r, body)
		case op == "embeddings" && r.Method == http.MethodPost:
			s.handleEmbeddings(w, r, body)
		default:
			writeError(w, http.StatusNotFound, "Resource not found", "", "", "404")
		}
		return true
	}
	if r.URL.Query().Get("api-version") == "" {
		writeError(w, http.StatusNotFound, "Resource not found", "", "", "404")
		return true
	}
	if path == "/openai/models" && r.Method == http.MethodGet {
		writeJSON(w, http.StatusOK, modelListBody, s.requestID())
		return true
	}
	rest, ok := strings.CutPrefix(path, "/openai/deployments/")
	deployment, op, _ := strings.Cut(rest, "/")
	switch {
	case !ok || deployment == "" || r.Method != http.MethodPost:
		writeError(w, http.StatusNotFound, "Resource not found", "", "", "404")
	case op == "chat/completions":
		s.handleChat(w, r, body)
	case op == "embeddings":
		s.handleEmbeddings(w, r, body)
	default:
		writeError(w, http.StatusNotFound, "Resource not found", "", "", "404")
	}
	return true
}
