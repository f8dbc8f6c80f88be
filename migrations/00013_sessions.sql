-- Dashboard sessions, so that a login on one replica is valid on every
-- replica sharing the database and a logout ends it everywhere. id is the
-- session id inside the signed cookie token (the token itself, and its
-- CSRF secret, are never stored); issued_at is when the session began, in
-- whole milliseconds after the password change it knew of; both times are
-- Unix ms.

-- +goose Up
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id, issued_at);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- +goose Down
DROP TABLE sessions;
