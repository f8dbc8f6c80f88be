-- The OpenTelemetry trace id of a request, when tracing was on and the
-- request's trace was sampled; empty otherwise.

-- +goose Up
ALTER TABLE request_logs ADD COLUMN trace_id TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE request_logs DROP COLUMN trace_id;
