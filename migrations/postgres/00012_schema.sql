-- The schema of LLM Proxy on PostgreSQL, as of version 12 of the SQLite
-- migrations (the directory above): PostgreSQL support begins here, so
-- its history starts with the whole schema in one step. From version 13 on,
-- every schema change is a file of the same number in both directories.
--
-- The types mirror the SQLite ones, so that the same SQL and the same Go
-- types serve both: ids and JSON are TEXT; timestamps are BIGINT Unix
-- milliseconds; booleans stay INTEGER 0/1 (SQLite has no boolean; the store
-- writes 0 and 1); SQLite's REAL is DOUBLE PRECISION (PostgreSQL's REAL
-- has 24 bits, too few for costs) and BLOB is BYTEA. The column order of
-- each table is the SQLite one, so SELECT * reads the same on both.

-- +goose Up

CREATE TABLE api_keys (
    id            TEXT             NOT NULL PRIMARY KEY,
    name          TEXT             NOT NULL,
    prefix        TEXT             NOT NULL,
    hash          BYTEA            NOT NULL UNIQUE,
    models        TEXT             NOT NULL DEFAULT '[]',
    created_at    BIGINT           NOT NULL,
    expires_at    BIGINT           NULL,
    revoked_at    BIGINT           NULL,
    last_used_at  BIGINT           NULL,
    rpm           INTEGER          NOT NULL DEFAULT 0,
    tpm           INTEGER          NOT NULL DEFAULT 0,
    max_parallel  INTEGER          NOT NULL DEFAULT 0,
    budget_usd    DOUBLE PRECISION NOT NULL DEFAULT 0,
    budget_period TEXT             NOT NULL DEFAULT '',
    updated_at    BIGINT           NOT NULL DEFAULT 0
);

CREATE TABLE users (
    id                  TEXT    NOT NULL PRIMARY KEY,
    username            TEXT    NOT NULL UNIQUE,
    password_hash       TEXT    NOT NULL,
    role                TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    disabled            INTEGER NOT NULL DEFAULT 0,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL,
    password_changed_at BIGINT  NOT NULL
);

CREATE TABLE providers (
    id                    TEXT    NOT NULL PRIMARY KEY,
    name                  TEXT    NOT NULL UNIQUE,
    plugin                TEXT    NOT NULL,
    base_url              TEXT    NOT NULL,
    models                TEXT    NOT NULL DEFAULT '[]',
    allow_private_network INTEGER NOT NULL DEFAULT 0,
    extra_hosts           TEXT    NOT NULL DEFAULT '[]',
    options               TEXT    NOT NULL DEFAULT '{}',
    secret_ciphertext     BYTEA   NULL,
    created_at            BIGINT  NOT NULL,
    updated_at            BIGINT  NOT NULL,
    allow_image_fetch     INTEGER NOT NULL DEFAULT 0,
    rpm                   INTEGER NOT NULL DEFAULT 0,
    tpm                   INTEGER NOT NULL DEFAULT 0,
    max_parallel          INTEGER NOT NULL DEFAULT 0,
    key_weights           TEXT    NOT NULL DEFAULT '[]'
);

CREATE TABLE request_logs (
    id                TEXT             NOT NULL PRIMARY KEY,
    ts                BIGINT           NOT NULL,
    key_id            TEXT             NULL,
    model             TEXT             NOT NULL DEFAULT '',
    provider          TEXT             NOT NULL DEFAULT '',
    plugin            TEXT             NOT NULL DEFAULT '',
    plugin_version    TEXT             NOT NULL DEFAULT '',
    status            INTEGER          NOT NULL DEFAULT 0,
    error_type        TEXT             NULL,
    latency_ms        DOUBLE PRECISION NOT NULL DEFAULT 0,
    ttfb_ms           DOUBLE PRECISION NOT NULL DEFAULT 0,
    stream            INTEGER          NOT NULL DEFAULT 0,
    prompt_tokens     BIGINT           NOT NULL DEFAULT 0,
    completion_tokens BIGINT           NOT NULL DEFAULT 0,
    cached_tokens     BIGINT           NOT NULL DEFAULT 0,
    cost_usd          DOUBLE PRECISION NOT NULL DEFAULT 0,
    request_body      TEXT             NULL,
    response_body     TEXT             NULL,
    attempts          INTEGER          NOT NULL DEFAULT 1,
    attempt_log       TEXT             NULL,
    trace_id          TEXT             NOT NULL DEFAULT '',
    api               TEXT             NOT NULL DEFAULT 'openai'
);
CREATE INDEX request_logs_ts          ON request_logs (ts);
CREATE INDEX request_logs_key_ts      ON request_logs (key_id, ts);
CREATE INDEX request_logs_model_ts    ON request_logs (model, ts);
CREATE INDEX request_logs_provider_ts ON request_logs (provider, ts);
CREATE INDEX request_logs_status_ts   ON request_logs (status, ts);

CREATE TABLE usage_rollups (
    period            BIGINT           NOT NULL,
    bucket            BIGINT           NOT NULL,
    key_id            TEXT             NOT NULL,
    model             TEXT             NOT NULL,
    provider          TEXT             NOT NULL,
    requests          BIGINT           NOT NULL,
    errors            BIGINT           NOT NULL,
    server_errors     BIGINT           NOT NULL,
    prompt_tokens     BIGINT           NOT NULL,
    completion_tokens BIGINT           NOT NULL,
    cached_tokens     BIGINT           NOT NULL,
    cost_usd          DOUBLE PRECISION NOT NULL,
    latency_sum_ms    DOUBLE PRECISION NOT NULL,
    ttfb_sum_ms       DOUBLE PRECISION NOT NULL,
    latency_hist      BYTEA            NOT NULL,
    ttfb_hist         BYTEA            NOT NULL,
    PRIMARY KEY (period, bucket, key_id, model, provider)
);

CREATE TABLE usage_rollup_state (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    days_until BIGINT  NULL
);
INSERT INTO usage_rollup_state (id, days_until) VALUES (1, NULL);

CREATE TABLE settings (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE routes (
    id                      TEXT    PRIMARY KEY,
    model                   TEXT    NOT NULL UNIQUE,
    strategy                TEXT    NOT NULL,
    targets                 TEXT    NOT NULL,
    max_attempts            INTEGER NOT NULL DEFAULT 0,
    context_window_fallback TEXT,
    created_at              BIGINT  NOT NULL,
    updated_at              BIGINT  NOT NULL
);

CREATE TABLE responses (
    id         TEXT   PRIMARY KEY,
    key_id     TEXT   NOT NULL,
    model      TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    messages   TEXT   NOT NULL,
    response   TEXT   NOT NULL
);
CREATE INDEX responses_expires_at ON responses (expires_at);

-- llmproxy_hist_merge adds two histograms encoded by
-- host/internal/histogram (a format byte 1, then per non-empty bucket the
-- unsigned varints of the distance from the previous bucket's slot and of
-- the count), as the SQLite driver's Go function of the same name does for
-- the rollup upsert. Its helpers read one bin and write one varint.
-- +goose StatementBegin
CREATE FUNCTION llmproxy_hist_bin(buf BYTEA, pos INT, prev BIGINT, OUT slot BIGINT, OUT cnt BIGINT, OUT next INT)
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    v     BIGINT;
    sh    INT;
    byt   INT;
    field INT;
BEGIN
    next := pos;
    FOR field IN 1..2 LOOP
        v := 0;
        sh := 0;
        LOOP
            IF next >= length(buf) OR sh > 56 THEN
                RAISE EXCEPTION 'llmproxy_hist_merge: corrupt histogram';
            END IF;
            byt := get_byte(buf, next);
            next := next + 1;
            v := v | ((byt & 127)::BIGINT << sh);
            EXIT WHEN byt < 128;
            sh := sh + 7;
        END LOOP;
        IF field = 1 THEN
            slot := CASE WHEN prev < 0 THEN v ELSE prev + v END;
        ELSE
            cnt := v;
        END IF;
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION llmproxy_uvarint(v BIGINT) RETURNS BYTEA
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    out BYTEA := ''::BYTEA;
BEGIN
    LOOP
        IF v < 128 THEN
            RETURN out || set_byte('\x00'::BYTEA, 0, v::INT);
        END IF;
        out := out || set_byte('\x00'::BYTEA, 0, ((v & 127) | 128)::INT);
        v := v >> 7;
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION llmproxy_hist_merge(a BYTEA, b BYTEA) RETURNS BYTEA
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    pa   INT := 1;
    pb   INT := 1;
    sa   BIGINT := -1;
    sb   BIGINT := -1;
    ca   BIGINT;
    cb   BIGINT;
    okA  BOOLEAN;
    okB  BOOLEAN;
    prev BIGINT := -1;
    slot BIGINT;
    cnt  BIGINT;
    out  BYTEA := '\x01'::BYTEA;
BEGIN
    IF length(a) = 0 OR get_byte(a, 0) <> 1 OR length(b) = 0 OR get_byte(b, 0) <> 1 THEN
        RAISE EXCEPTION 'llmproxy_hist_merge: unknown histogram format';
    END IF;
    okA := pa < length(a);
    IF okA THEN SELECT h.slot, h.cnt, h.next INTO sa, ca, pa FROM llmproxy_hist_bin(a, pa, sa) h; END IF;
    okB := pb < length(b);
    IF okB THEN SELECT h.slot, h.cnt, h.next INTO sb, cb, pb FROM llmproxy_hist_bin(b, pb, sb) h; END IF;
    WHILE okA OR okB LOOP
        IF okA AND (NOT okB OR sa < sb) THEN
            slot := sa; cnt := ca;
        ELSIF okB AND (NOT okA OR sb < sa) THEN
            slot := sb; cnt := cb;
        ELSE
            slot := sa; cnt := ca + cb;
        END IF;
        out := out || llmproxy_uvarint(CASE WHEN prev < 0 THEN slot ELSE slot - prev END) || llmproxy_uvarint(cnt);
        prev := slot;
        IF okA AND sa = slot THEN
            okA := pa < length(a);
            IF okA THEN SELECT h.slot, h.cnt, h.next INTO sa, ca, pa FROM llmproxy_hist_bin(a, pa, sa) h; END IF;
        END IF;
        IF okB AND sb = slot THEN
            okB := pb < length(b);
            IF okB THEN SELECT h.slot, h.cnt, h.next INTO sb, cb, pb FROM llmproxy_hist_bin(b, pb, sb) h; END IF;
        END IF;
    END LOOP;
    RETURN out;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION llmproxy_hist_merge(BYTEA, BYTEA);
DROP FUNCTION llmproxy_uvarint(BIGINT);
DROP FUNCTION llmproxy_hist_bin(BYTEA, INT, BIGINT);
DROP TABLE responses;
DROP TABLE routes;
DROP TABLE settings;
DROP TABLE usage_rollup_state;
DROP TABLE usage_rollups;
DROP TABLE request_logs;
DROP TABLE providers;
DROP TABLE users;
DROP TABLE api_keys;
