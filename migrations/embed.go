// Package migrations holds the database schema of LLM Proxy as numbered,
// plain-SQL goose migrations, embedded into the binary.
//
// Each file is named NNNNN_description.sql and has a "-- +goose Up" section
// and a "-- +goose Down" section. Files are applied in version order and are
// never edited once released: a change to the schema is a new file. The
// statements are written for SQLite and kept close to portable SQL (TEXT
// ids, BIGINT counters and timestamps), so a PostgreSQL port should need
// little more than BLOB → BYTEA.
//
// host/internal/store applies pending migrations when it opens a database.
package migrations

import "embed"

// FS holds every migration file (*.sql) of this directory.
//
//go:embed *.sql
var FS embed.FS
