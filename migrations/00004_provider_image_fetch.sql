-- allow_image_fetch: the operator lets this provider's plugin have the host
-- download images that clients name by URL (the plugin's manifest must ask
-- for the fetch_image capability too). Off for existing providers.

-- +goose Up
ALTER TABLE providers ADD COLUMN allow_image_fetch INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE providers DROP COLUMN allow_image_fetch;
