-- The API the client spoke: "openai" (chat completions, embeddings),
-- "messages" (Anthropic's Messages API) or "responses" (OpenAI's Responses
-- API). Every request before this column spoke OpenAI's.

-- +goose Up
ALTER TABLE request_logs ADD COLUMN api TEXT NOT NULL DEFAULT 'openai';

-- +goose Down
ALTER TABLE request_logs DROP COLUMN api;
