#!/bin/sh
# Runs one service of the platform: `webmail-entrypoint <service> [args...]` is `python -m <service>`.
# Operator tools work the same way: `webmail-entrypoint directory.admin maintenance status`.
set -eu
case "${1:-}" in
  ingest|scan|spam|delivery|directory|notify|webmail|directory.admin|spam.admin|common.deadletters|common.config)
    service=$1
    shift
    exec python -m "$service" "$@"
    ;;
  *)
    echo "usage: webmail-entrypoint ingest|scan|spam|delivery|directory|notify|webmail [args...]" >&2
    echo "       webmail-entrypoint directory.admin|spam.admin|common.deadletters [args...]" >&2
    exit 64
    ;;
esac
