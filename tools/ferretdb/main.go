// Command ferretdb runs FerretDB v1.24.2 (MongoDB wire protocol over an SQLite
// backend) for development and CI machines that have no MongoDB.
//
// It is a thin launcher around FerretDB's public embedding API
// (github.com/FerretDB/FerretDB/ferretdb). The upstream binary built with
// `go install .../cmd/ferretdb@v1.24.2` panics at start-up because the module
// archive lacks its generated build/version/version.txt; the embedding API
// skips that check, so the same server code runs unchanged.
//
// Beside the server it runs the index keeper (idindex.go), which gives FerretDB's `_id` lookups an
// SQLite index they can use (without it every `_id` lookup scans its table).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	sqliteURL := flag.String("sqlite-url", "file:data/", "SQLite backend directory URI (must end with a slash)")
	level := flag.String("log-level", "warn", "log level: debug, info, warn or error")
	idIndexInterval := flag.Duration(
		"id-index-interval", time.Second,
		"how often the index keeper looks for tables without the _id lookup index (0: never)",
	)
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

	var keeper sync.WaitGroup
	if *idIndexInterval > 0 {
		dir, err := sqliteDir(*sqliteURL)
		if err != nil {
			logger.Error("invalid --sqlite-url", "error", err)
			os.Exit(2)
		}
		if dir != "" {
			keeper.Add(1)
			go func() {
				defer keeper.Done()
				newIndexKeeper(dir, *idIndexInterval, logger).run(ctx)
			}()
		}
	}

	logger.Info("FerretDB listening", "addr", *listen, "sqlite", *sqliteURL)
	err = f.Run(ctx)
	stop()        // stops the keeper too when the server stopped on its own
	keeper.Wait() // an index being built is finished or rolled back, never left half-done
	if err != nil {
		logger.Error("FerretDB stopped with an error", "error", err)
		os.Exit(1)
	}
}
