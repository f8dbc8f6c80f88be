package apierror

// Code is the machine-readable "code" of an error. Every code the proxy
// itself gives is one of the constants below, each listed with its status
// in docs/api.md ("Error codes"); a provider's own codes pass through as
// its plugin reports them.
type Code string

// NoCode is OpenAI's "code": null, for errors whose type and param say
// it all.
const NoCode Code = ""

// Codes of the OpenAI-compatible /v1 face.
const (
	// Authentication (401).
	CodeMissingAPIKey Code = "missing_api_key"
	CodeInvalidAPIKey Code = "invalid_api_key"
	CodeExpiredAPIKey Code = "expired_api_key"
	CodeRevokedAPIKey Code = "revoked_api_key"

	// The request (400, 403, 404, 405, 413).
	CodeInvalidJSON          Code = "invalid_json"
	CodeInvalidModel         Code = "invalid_model"
	CodeUnsupportedOperation Code = "unsupported_operation"
	CodeModelNotAllowed      Code = "model_not_allowed"
	CodeModelNotFound        Code = "model_not_found"
	CodeUnknownURL           Code = "unknown_url"
	CodeMethodNotAllowed     Code = "method_not_allowed"
	CodeRequestTooLarge      Code = "request_too_large"
	// The Responses API's kept responses (400, 404).
	CodePreviousResponseNotFound Code = "previous_response_not_found"
	CodeResponseNotFound         Code = "response_not_found"
	CodeUnsupportedContent       Code = "unsupported_content"

	// Limits (429).
	CodeRateLimitExceeded        Code = "rate_limit_exceeded"
	CodeConcurrencyLimitExceeded Code = "concurrency_limit_exceeded"
	CodeBudgetExceeded           Code = "budget_exceeded"
	CodeProviderRateLimited      Code = "provider_rate_limited"

	// Routing and upstreams (502, 503, 504). CodeContextLengthExceeded is
	// the upstream's own code for a prompt too long for the model, which
	// sends a request to its route's context-window fallback.
	CodeNoTarget                Code = "no_target"
	CodeUpstreamUnavailable     Code = "upstream_unavailable"
	CodeUpstreamAuthFailed      Code = "upstream_auth_failed"
	CodeUpstreamInvalidResponse Code = "upstream_invalid_response"
	CodeContextLengthExceeded   Code = "context_length_exceeded"

	// Plugins (502, 503, 504).
	CodePluginNotLoaded   Code = "plugin_not_loaded"
	CodePluginBusy        Code = "plugin_busy"
	CodePluginFailed      Code = "plugin_failed"
	CodePluginNoResponse  Code = "plugin_no_response"
	CodePluginOutputLimit Code = "plugin_output_limit"
	CodePluginTimeout     Code = "plugin_timeout"

	// The client went away before the answer (499, in the request log
	// only).
	CodeClientClosedRequest Code = "client_closed_request"

	// Anything else: a bug, logged with its details (500).
	CodeInternalError Code = "internal_error"
)

// Codes of the admin /api face.
const (
	// Sign-in and sessions (400, 401, 403, 415, 429).
	CodeMissingCredentials   Code = "missing_credentials"
	CodeInvalidCredentials   Code = "invalid_credentials"
	CodeSessionExpired       Code = "session_expired"
	CodeNoSession            Code = "no_session"
	CodePermissionDenied     Code = "permission_denied"
	CodeCSRFFailed           Code = "csrf_failed"
	CodeInvalidContentType   Code = "invalid_content_type"
	CodeTooManyLoginAttempts Code = "too_many_login_attempts"
	CodeOriginNotAllowed     Code = "origin_not_allowed"
	CodeWebSocketRequired    Code = "websocket_required"

	// Bodies and filters (400).
	CodeInvalidRequest    Code = "invalid_request"
	CodeInvalidFilter     Code = "invalid_filter"
	CodeInvalidSetting    Code = "invalid_setting"
	CodeInvalidKeyRequest Code = "invalid_key_request"
	CodeInvalidProvider   Code = "invalid_provider"
	CodeInvalidRoute      Code = "invalid_route"
	CodeInvalidPlugin     Code = "invalid_plugin"
	CodeInvalidFileName   Code = "invalid_file_name"

	// Things named in the path (404, 409).
	CodeKeyNotFound      Code = "key_not_found"
	CodeLogNotFound      Code = "log_not_found"
	CodeUserNotFound     Code = "user_not_found"
	CodeUserExists       Code = "user_exists"
	CodeLastAdmin        Code = "last_admin"
	CodeProviderNotFound Code = "provider_not_found"
	CodeProviderExists   Code = "provider_exists"
	CodeProviderReadOnly Code = "provider_read_only"
	CodeRouteNotFound    Code = "route_not_found"
	CodeRouteExists      Code = "route_exists"
	CodeRouteReadOnly    Code = "route_read_only"

	// A provider's connection test (503, 504), in its answer's body.
	CodeProviderNotServed Code = "provider_not_served"
	CodeProviderTimeout   Code = "provider_timeout"
)
