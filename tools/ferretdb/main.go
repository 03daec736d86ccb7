// Command ferretdb runs FerretDB v1.24.2 (MongoDB wire protocol over an SQLite
// backend) for development and CI machines that have no MongoDB.
//
// It is a thin launcher around FerretDB's public embedding API
// (github.com/FerretDB/FerretDB/ferretdb). The upstream binary built with
// `go install .../cmd/ferretdb@v1.24.2` panics at start-up because the module
// archive lacks its generated build/version/version.txt; the embedding API
// skips that check, so the same server code runs unchanged.
//
// It is built against FerretDB's source with one line changed (scripts/stack.py, FERRETDB_PATCHES):
// the SQL expression FerretDB filters `_id` with is made the same as the one its unique `_id` index is
// built on, so that SQLite uses that index for `_id` lookups instead of scanning the table
// (docs/ARCHITECTURE.md, "FerretDB").
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	sqliteURL := flag.String("sqlite-url", "file:data/", "SQLite backend directory URI (must end with a slash)")
	level := flag.String("log-level", "warn", "log level: debug, info, warn or error")
	flag.Parse()

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(os.Stderr, "invalid --log-level %q: %v\n", *level, err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: *sqliteURL,
	})
	if err != nil {
		logger.Error("cannot start FerretDB", "error", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger.Info("FerretDB listening", "addr", *listen, "sqlite", *sqliteURL)
	if err := f.Run(ctx); err != nil {
		logger.Error("FerretDB stopped with an error", "error", err)
		os.Exit(1)
	}
}
