-- Limits that protect a provider's own quotas upstream, 0 meaning none:
-- requests and tokens per minute, and requests at once, over all the
-- proxy's clients.

-- +goose Up
ALTER TABLE providers ADD COLUMN rpm INTEGER NOT NULL DEFAULT 0;
ALTER TABLE providers ADD COLUMN tpm INTEGER NOT NULL DEFAULT 0;
ALTER TABLE providers ADD COLUMN max_parallel INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE providers DROP COLUMN max_parallel;
ALTER TABLE providers DROP COLUMN tpm;
ALTER TABLE providers DROP COLUMN rpm;
