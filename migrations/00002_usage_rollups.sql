-- Usage rollups: the request log summed per hour and per day, so that usage
-- over weeks reads a few thousand rows instead of every request.
--
-- One row per (period, bucket, key, model, provider). Hour
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
--   errors        requests with a status of 400 or more
--   server_errors requests with a status of 500 or more (the rest of the
--                 errors are 4xx)
--   latency_hist, ttfb_hist
--                 histograms of latency_ms and ttfb_ms in the format of
--                 host/internal/histogram: log-spaced buckets, so that
--                 merged histograms give percentiles within 1 % of the
--                 exact values
--
-- The status is not part of the key: with the status class in it, there
-- were 2.3 times as many rows for the same requests (errors are spread
-- over every key and model), and usage queries read rows, so they were
-- about twice as slow. The error counts are columns instead.
--
-- The table is WITHOUT ROWID: its rows are stored in primary key order, so
-- a usage query reads one contiguous range of one b-tree (with a rowid, it
-- went through the key index and then to the table for every row, which
-- made reading five times slower), and an upsert updates one b-tree.
--
-- PostgreSQL: the same table without WITHOUT ROWID, BYTEA for the
-- histograms, and a function of the same name to merge them in the upsert
-- (or the histograms become BIGINT[] of fixed length, added element by
-- element).

-- +goose Up

CREATE TABLE usage_rollups (
    period            BIGINT  NOT NULL,
    bucket            BIGINT  NOT NULL,
    key_id            TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    requests          BIGINT  NOT NULL,
    errors            BIGINT  NOT NULL,
    server_errors     BIGINT  NOT NULL,
    prompt_tokens     BIGINT  NOT NULL,
    completion_tokens BIGINT  NOT NULL,
    cached_tokens     BIGINT  NOT NULL,
    cost_usd          REAL    NOT NULL,
    latency_sum_ms    REAL    NOT NULL,
    ttfb_sum_ms       REAL    NOT NULL,
    latency_hist      BLOB    NOT NULL,
    ttfb_hist         BLOB    NOT NULL,
    PRIMARY KEY (period, bucket, key_id, model, provider)
) WITHOUT ROWID;

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
