#!/usr/bin/env bash
# Installs what the platform needs on a fresh Debian machine, idempotently:
#   - Debian packages (RabbitMQ, ClamAV and its test files, Prometheus, swaks; with `bench`, bogofilter and
#     SpamAssassin), only those missing;
#   - the Python virtualenv .venv with the pinned dependencies (pyproject.toml + constraints.txt);
#   - FerretDB v1.24.2 in var/bin when no MONGODB_URL is given (built once from tools/ferretdb);
#   - kustomize (pinned) in var/bin, for the manifest tests; promtool and prometheus come from Debian;
#   - the webmail's front-end assets (DSFR, htmx, axe-core) from npm into services/webmail/node_modules;
#   - Debian's chromium, which the browser tests drive with Playwright.
set -euo pipefail
cd "$(dirname "$0")/.."

# Infrastructure, the local Prometheus (and promtool), swaks for the SMTP tests, chromium for the browser
# tests, espeak-ng to remake the audio captcha's French voice (`python -m webmail.voices`).
# `bootstrap.sh bench` also installs the reference filters the spam benchmark compares against, and
# Postfix, the MTA the pipeline benchmark compares against (it runs a private instance under var/; the
# system's is never configured).
APT_PACKAGES=(rabbitmq-server clamav-daemon clamav clamav-testfiles prometheus swaks chromium fonts-dejavu-core
  espeak-ng)
if [ "${1:-}" = "bench" ]; then
  APT_PACKAGES+=(bogofilter spamassassin spamc postfix)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "Installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # Postfix's "No configuration": no main.cf, no system mail service; bench/postfix.py configures its own.
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  # Package scripts must not start system-wide daemons: the project starts its own (scripts/stack.py).
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "Creating the virtualenv .venv"
  "$PYTHON" -m venv .venv
fi
stamp=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.installed 2>/dev/null)" != "$stamp" ]; then
  echo "Installing Python dependencies (pinned)"
  .venv/bin/pip install -q --upgrade pip==25.3
  .venv/bin/pip install -q -c constraints.txt -e '.[dev]'
  echo "$stamp" > .venv/.installed
fi

if [ -z "${MONGODB_URL:-}" ]; then
  .venv/bin/python -c "import sys; sys.path.insert(0, 'scripts'); import stack; stack.ferretdb_binary()"
fi

# kustomize renders deploy/ for the manifest tests (tests/deploy): built once from the Go module proxy
# into the project's bin folder, rebuilt when the pinned version changes. promtool comes with Debian's
# `prometheus` above.
KUSTOMIZE_VERSION=v5.8.1
BIN_DIR="${STATE_DIR:-$PWD/var}/bin"
if [ ! -x "$BIN_DIR/kustomize" ] || [ "$(cat "$BIN_DIR/kustomize.version" 2>/dev/null)" != "$KUSTOMIZE_VERSION" ]; then
  if command -v go >/dev/null; then
    echo "Building kustomize $KUSTOMIZE_VERSION into $BIN_DIR (first run only)"
    mkdir -p "$BIN_DIR"
    GOTOOLCHAIN=local GOBIN="$BIN_DIR" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
    echo "$KUSTOMIZE_VERSION" > "$BIN_DIR/kustomize.version"
  else
    echo "Go is not installed: kustomize cannot be built, the manifest tests (tests/deploy) will fail" >&2
  fi
fi

# The webmail's assets, pinned by services/webmail/package-lock.json. Install scripts are skipped: the
# DSFR's only one checks for a DSFR project configuration we do not use (we serve its built dist/).
lock_stamp=$(sha256sum services/webmail/package-lock.json | cut -d' ' -f1)
if [ "$(cat services/webmail/node_modules/.installed 2>/dev/null)" != "$lock_stamp" ]; then
  echo "Installing the webmail's front-end assets (npm ci)"
  npm ci --prefix services/webmail --ignore-scripts --no-audit --no-fund --silent
  echo "$lock_stamp" > services/webmail/node_modules/.installed
fi
