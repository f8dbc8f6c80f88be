-- attempts: how many targets a request was tried on (retries and
-- fallbacks included); attempt_log: each attempt's provider, model, status,
-- error and time, as JSON, kept only when there was more than one.

-- +goose Up
ALTER TABLE request_logs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE request_logs ADD COLUMN attempt_log TEXT;

-- +goose Down
ALTER TABLE request_logs DROP COLUMN attempt_log;
ALTER TABLE request_logs DROP COLUMN attempts;
