-- Routes managed at run time through the admin API, next to the
-- [[routes]] of config.toml. A route maps the model name clients ask for
-- to its targets; the targets and the context-window fallback are JSON
-- ({provider, model, weight}). A target may name a provider that does not
-- exist (yet): it is left out of the route until one does.

-- +goose Up
CREATE TABLE routes (
    id                      TEXT PRIMARY KEY,
    model                   TEXT NOT NULL UNIQUE,
    strategy                TEXT NOT NULL,
    targets                 TEXT NOT NULL,
    max_attempts            INTEGER NOT NULL DEFAULT 0,
    context_window_fallback TEXT,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL
);

-- +goose Down
DROP TABLE routes;
