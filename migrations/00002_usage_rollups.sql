-- Usage rollups: the request log summed per hour and per day, so that usage
-- over weeks reads a few thousand rows instead of every request.
--
-- One row per (period, bucket, key, model, provider, status class). Hour
-- rows are maintained in the transaction that inserts a batch of request
-- logs: the store sums the batch in Go and upserts one row per group,
-- adding counts and sums and merging histograms. Day rows are summed from
-- the hour rows once a day is over (usage_rollup_state says up to where);
-- a late request that falls in a day already summed updates both rows.
-- Request logs that existed before this migration are summed by the next
-- one (version 3, a Go migration in host/internal/store, since the
-- histograms are built in Go).
--
--   period        the bucket length in ms: 3600000 (hour) or 86400000 (day,
--                 UTC)
--   bucket        the start of the bucket, Unix ms, a multiple of period
--   key_id        the client key; '' for the admin key (NULL in
--                 request_logs: a primary key column cannot be NULL)
--   status_class  status / 100 (2 for 2xx, 0 for a request that never got
--                 a status). The errors of a row are its requests when
--                 status_class >= 4 (status >= 400), none otherwise, so
--                 there is no error count column to keep in step.
--   latency_hist, ttfb_hist
--                 histograms of latency_ms and ttfb_ms in the format of
--                 host/internal/histogram: log-spaced buckets, so that
--                 merged histograms give percentiles within 1 % of the
--                 exact values
--
-- PostgreSQL: the same table with BYTEA for the histograms; the upsert
-- merges them with a function of the same name (or the histograms become
-- BIGINT[] of fixed length, added element by element).

-- +goose Up

CREATE TABLE usage_rollups (
    period            BIGINT  NOT NULL,
    bucket            BIGINT  NOT NULL,
    key_id            TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    status_class      INTEGER NOT NULL,
    requests          BIGINT  NOT NULL,
    prompt_tokens     BIGINT  NOT NULL,
    completion_tokens BIGINT  NOT NULL,
    cached_tokens     BIGINT  NOT NULL,
    cost_usd          REAL    NOT NULL,
    latency_sum_ms    REAL    NOT NULL,
    ttfb_sum_ms       REAL    NOT NULL,
    latency_hist      BLOB    NOT NULL,
    ttfb_hist         BLOB    NOT NULL,
    PRIMARY KEY (period, bucket, key_id, model, provider, status_class)
);

-- Every day before days_until (Unix ms, a midnight UTC) has its day rows;
-- no later day has any. NULL: no day summed yet.
CREATE TABLE usage_rollup_state (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    days_until BIGINT  NULL
);
INSERT INTO usage_rollup_state (id, days_until) VALUES (1, NULL);

-- +goose Down

DROP TABLE usage_rollup_state;
DROP TABLE usage_rollups;
