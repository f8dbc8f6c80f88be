-- Limits of a client key, 0 meaning none: requests and tokens per minute,
-- requests at once, and a budget in USD per day or month. updated_at tells
-- other processes on the database that a key's limits or name changed.

-- +goose Up
ALTER TABLE api_keys ADD COLUMN rpm INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN tpm INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN max_parallel INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN budget_usd REAL NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN budget_period TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE api_keys DROP COLUMN updated_at;
ALTER TABLE api_keys DROP COLUMN budget_period;
ALTER TABLE api_keys DROP COLUMN budget_usd;
ALTER TABLE api_keys DROP COLUMN max_parallel;
ALTER TABLE api_keys DROP COLUMN tpm;
ALTER TABLE api_keys DROP COLUMN rpm;
