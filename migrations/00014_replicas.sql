-- Replicas sharing the database. Each running proxy has a row in replicas,
-- written every few seconds (seen_at, Unix ms), with the plugins it loaded
-- (a JSON array of name, version and sha256), so that every replica can
-- show the fleet. limit_shares holds each replica's counts for client keys
-- with limits (requests and tokens in the sliding minute, requests in
-- flight and their reserved cost), written every 250 ms: every replica
-- admits against its own counts plus the others'. Rows of a replica not
-- seen for a while are ignored and then deleted.

-- +goose Up
CREATE TABLE replicas (
    id         TEXT PRIMARY KEY,
    hostname   TEXT NOT NULL,
    version    TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    seen_at    BIGINT NOT NULL,
    plugins    TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE limit_shares (
    replica    TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    requests   BIGINT NOT NULL,
    tokens     BIGINT NOT NULL,
    in_flight  BIGINT NOT NULL,
    reserved   REAL NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (replica, key_id)
);
CREATE INDEX limit_shares_updated_at ON limit_shares (updated_at);

-- +goose Down
DROP TABLE limit_shares;
DROP TABLE replicas;
