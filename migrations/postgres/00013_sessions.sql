-- Dashboard sessions (see the SQLite migration of the same number), and
-- change notices: every statement that changes a table the proxy keeps in
-- memory (keys, providers, routes, settings) sends the table's name on the
-- channel llmproxy_changes, whoever ran it (a replica, the llm-proxy
-- command, psql). Each replica LISTENs and reloads that table at once.
-- PostgreSQL delivers a notice when the transaction commits and sends one
-- per distinct payload per transaction.

-- +goose Up
CREATE TABLE sessions (
    id         TEXT   NOT NULL PRIMARY KEY,
    user_id    TEXT   NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id, issued_at);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- +goose StatementBegin
CREATE FUNCTION llmproxy_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('llmproxy_changes', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION llmproxy_notify_change();
CREATE TRIGGER providers_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON providers
    FOR EACH STATEMENT EXECUTE FUNCTION llmproxy_notify_change();
CREATE TRIGGER routes_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON routes
    FOR EACH STATEMENT EXECUTE FUNCTION llmproxy_notify_change();
CREATE TRIGGER settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON settings
    FOR EACH STATEMENT EXECUTE FUNCTION llmproxy_notify_change();

-- +goose Down
DROP TRIGGER settings_changed ON settings;
DROP TRIGGER routes_changed ON routes;
DROP TRIGGER providers_changed ON providers;
DROP TRIGGER api_keys_changed ON api_keys;
DROP FUNCTION llmproxy_notify_change();
DROP TABLE sessions;
