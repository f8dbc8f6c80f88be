// Package migrations holds the database schema of LLM Proxy as numbered,
// plain-SQL goose migrations, embedded into the binary.
//
// Each file is named NNNNN_description.sql and has a "-- +goose Up" section
// and a "-- +goose Down" section. Files are applied in version order and are
// never edited once released: a change to the schema is a new file. The
// files here are SQLite's; postgres/ holds PostgreSQL's, whose history
// starts at version 12 with the whole schema. From then on a schema change
// is a file of the same number in both, and a test holds the two schemas
// to the same tables and columns.
//
// host/internal/store applies pending migrations when it opens a database.
package migrations

import (
	"embed"
	"io/fs"
)

// FS holds every SQLite migration file (*.sql) of this directory.
//
//go:embed *.sql
var FS embed.FS

//go:embed postgres/*.sql
var postgresFS embed.FS

// Postgres holds the PostgreSQL migrations (postgres/*.sql), at its root.
var Postgres fs.FS = mustSub(postgresFS, "postgres")

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}
