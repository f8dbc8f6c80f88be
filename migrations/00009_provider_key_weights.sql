-- Each of a provider's keys may take a share of its requests: a JSON
-- array of weights, one per key in the order of the sealed secret's keys,
-- or empty for equal turns. The weights are not secret.

-- +goose Up
ALTER TABLE providers ADD COLUMN key_weights TEXT NOT NULL DEFAULT '[]';

-- +goose Down
ALTER TABLE providers DROP COLUMN key_weights;
