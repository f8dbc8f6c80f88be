-- Responses kept for OpenAI's Responses API, so that a later request can
-- continue one with previous_response_id. messages holds the conversation
-- up to and including the response, as the comma-separated messages of a
-- unified (chat completion) request; response is the Response object the
-- client got. A response belongs to the key that made it (key_id, "admin"
-- for the admin key) and is deleted once expires_at (Unix ms) is past.

-- +goose Up
CREATE TABLE responses (
    id         TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL,
    model      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    messages   TEXT NOT NULL,
    response   TEXT NOT NULL
);
CREATE INDEX responses_expires_at ON responses (expires_at);

-- +goose Down
DROP TABLE responses;
