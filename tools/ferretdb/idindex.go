package main

// The index keeper: an index that FerretDB's own `_id` lookups can use.
//
// FerretDB v1.24's SQLite backend pushes a lone string or ObjectId `_id` filter down as
//
//	WHERE _ferretdb_sjson->'$._id' = ?
//
// (metadata.IDColumn, used by queries, updates and deletes), but the unique index it creates for `_id`
// is on the expression _ferretdb_sjson->"_id" (metadata/registry.go). SQLite only uses an expression
// index for a term whose expression is the same, and those two differ, so every `_id` lookup scans the
// whole table: 100–200 ms at 50,000 rows.
//
// The keeper adds, beside FerretDB's own indexes, a plain (non-unique) index on the exact expression
// FerretDB queries with, to every collection table of every database file, including collections and
// databases created while it runs. FerretDB keeps enforcing uniqueness with its own index and never
// sees this one (it is not in its metadata): a dropped collection drops it with its table.
//
// It works on the files directly, with its own short-lived SQLite connection (WAL, a busy timeout),
// at most once per interval per file, and only for files that changed since it last found every table
// indexed. The index name starts with FerretDB's reserved prefix, so it can never collide with an
// index FerretDB creates (those are named "<table>_<index name>").

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the same SQLite driver FerretDB uses
)

const (
	// idExpression is FerretDB's metadata.IDColumn, the expression of its pushed-down `_id` filters.
	idExpression = `_ferretdb_sjson->'$._id'`
	// metadataTable lists a database file's collections and their tables (FerretDB's registry).
	metadataTable = "_ferretdb_collections"
	// lookupPrefix and lookupSuffix frame the index name: _ferretdb_<table>_id_lookup.
	lookupPrefix = "_ferretdb_"
	lookupSuffix = "_id_lookup"
	// keeperBusyTimeout bounds how long one statement waits for FerretDB's writers.
	keeperBusyTimeout = 5 * time.Second
)

// lookupIndexName is the name of the keeper's index on table.
func lookupIndexName(table string) string {
	return lookupPrefix + table + lookupSuffix
}

// quoteIdent quotes an SQLite identifier.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// sqliteDir is the directory of an SQLite backend URI such as "file:/srv/data/" or "file:data/",
// or "" for an in-memory backend (nothing to keep).
func sqliteDir(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", err
	}
	if u.Query().Get("mode") == "memory" {
		return "", nil
	}
	dir := u.Path
	if u.Opaque != "" {
		dir = u.Opaque
	}
	if dir == "" {
		return "", fmt.Errorf("no directory in SQLite URI %q", uri)
	}
	return filepath.Clean(dir), nil
}

// fileState is what the keeper remembers of a database file: its and its WAL's size and mtime.
type fileState struct {
	size, walSize   int64
	mtime, walMtime time.Time
}

func statFile(path string) (fileState, bool) {
	info, err := os.Stat(path)
	if err != nil {
		return fileState{}, false
	}
	state := fileState{size: info.Size(), mtime: info.ModTime()}
	if wal, err := os.Stat(path + "-wal"); err == nil {
		state.walSize, state.walMtime = wal.Size(), wal.ModTime()
	}
	return state, true
}

// indexKeeper adds the `_id` lookup index to the collection tables of the database files in dir.
type indexKeeper struct {
	dir      string
	interval time.Duration
	logger   *slog.Logger

	// done holds the state of each file in which every table had its index when last checked.
	done map[string]fileState
	// lastErr is the last error logged per file, so that a persisting error is logged once.
	lastErr map[string]string
}

func newIndexKeeper(dir string, interval time.Duration, logger *slog.Logger) *indexKeeper {
	return &indexKeeper{
		dir:      dir,
		interval: interval,
		logger:   logger.With("component", "index-keeper"),
		done:     map[string]fileState{},
		lastErr:  map[string]string{},
	}
}

// run checks every database file each interval until ctx is done.
func (k *indexKeeper) run(ctx context.Context) {
	ticker := time.NewTicker(k.interval)
	defer ticker.Stop()

	for {
		k.pass(ctx)

		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// pass checks each database file once.
func (k *indexKeeper) pass(ctx context.Context) {
	files, err := filepath.Glob(filepath.Join(k.dir, "*.sqlite"))
	if err != nil {
		k.logger.Warn("cannot list the database files", "dir", k.dir, "error", err)
		return
	}

	present := make(map[string]bool, len(files))

	for _, file := range files {
		if ctx.Err() != nil {
			return
		}

		present[file] = true

		before, ok := statFile(file)
		if !ok {
			continue // dropped meanwhile
		}

		if last, ok := k.done[file]; ok && last == before {
			continue // unchanged since every table was found indexed
		}

		created, err := k.ensure(ctx, file)
		if err != nil {
			delete(k.done, file)

			if ctx.Err() == nil && k.lastErr[file] != err.Error() {
				k.lastErr[file] = err.Error()
				k.logger.Warn("cannot check the _id lookup indexes; will retry", "file", file, "error", err)
			}

			continue
		}

		delete(k.lastErr, file)

		if created == 0 {
			// Every table is indexed: skip the file until it changes again. A pass that created
			// indexes changed the file itself, so it is looked at once more next time.
			if after, ok := statFile(file); ok {
				k.done[file] = after
			}
		}
	}

	for file := range k.done {
		if !present[file] {
			delete(k.done, file)
		}
	}

	for file := range k.lastErr {
		if !present[file] {
			delete(k.lastErr, file)
		}
	}
}

// ensure creates the missing `_id` lookup indexes in one database file; returns how many it created.
func (k *indexKeeper) ensure(ctx context.Context, file string) (int, error) {
	// mode=rw: never create a file FerretDB has just dropped.
	dsn := (&url.URL{
		Scheme:   "file",
		Path:     file,
		RawQuery: fmt.Sprintf("mode=rw&_pragma=busy_timeout(%d)", keeperBusyTimeout.Milliseconds()),
	}).String()

	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return 0, err
	}
	defer db.Close()

	db.SetMaxOpenConns(1)

	conn, err := db.Conn(ctx)
	if err != nil {
		if _, statErr := os.Stat(file); errors.Is(statErr, os.ErrNotExist) {
			return 0, nil // dropped meanwhile
		}

		return 0, err
	}
	defer conn.Close()

	// FerretDB switches every file to WAL as it opens it; a file not in WAL yet is still being created.
	var mode string
	if err = conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return 0, err
	}

	if !strings.EqualFold(mode, "wal") {
		return 0, fmt.Errorf("journal mode is %q, not wal yet", mode)
	}

	tables, err := k.unindexed(ctx, conn)
	if err != nil {
		return 0, err
	}

	created := 0

	for _, table := range tables {
		started := time.Now()
		q := fmt.Sprintf(
			"CREATE INDEX IF NOT EXISTS %s ON %s (%s)",
			quoteIdent(lookupIndexName(table)), quoteIdent(table), idExpression,
		)

		if _, err = conn.ExecContext(ctx, q); err != nil {
			if strings.Contains(err.Error(), "no such table") {
				continue // the collection was dropped meanwhile
			}

			return created, fmt.Errorf("table %s: %w", table, err)
		}

		created++

		k.logger.Info(
			"created the _id lookup index",
			"file", filepath.Base(file), "table", table, "duration", time.Since(started).String(),
		)
	}

	return created, nil
}

// unindexed lists the collection tables of a database file that lack the keeper's index.
func (k *indexKeeper) unindexed(ctx context.Context, conn *sql.Conn) ([]string, error) {
	var hasMetadata int

	err := conn.QueryRowContext(
		ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", metadataTable,
	).Scan(&hasMetadata)
	if err != nil {
		return nil, err
	}

	if hasMetadata == 0 {
		return nil, nil // a database file FerretDB is still creating, or not one of FerretDB's
	}

	rows, err := conn.QueryContext(ctx, fmt.Sprintf(
		`SELECT c.table_name FROM %s AS c
		 JOIN sqlite_master AS t ON t.type = 'table' AND t.name = c.table_name
		 WHERE NOT EXISTS (SELECT 1 FROM sqlite_master AS i WHERE i.type = 'index' AND i.name = ? || c.table_name || ?)
		 ORDER BY c.table_name`,
		quoteIdent(metadataTable),
	), lookupPrefix, lookupSuffix)
	if err != nil {
		return nil, err
	}
	defer rows.Close()

	var tables []string

	for rows.Next() {
		var table string
		if err = rows.Scan(&table); err != nil {
			return nil, err
		}

		tables = append(tables, table)
	}

	return tables, rows.Err()
}
