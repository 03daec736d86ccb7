# The platform's entry points. `make run` and `make test` work on a fresh machine: they install what is
# missing (scripts/bootstrap.sh) and start what is needed (scripts/stack.py).
PY := .venv/bin/python
PROTOS := $(wildcard proto/*.proto)

.PHONY: help bootstrap proto lint format test test-unit run stop status bench clean

help:
	@echo "make run     install, start the infrastructure, every service and the demo data"
	@echo "make test    install, start the infrastructure, lint, run every test"
	@echo "make stop    stop everything make run or make test started"
	@echo "make status  what runs where"
	@echo "make bench   benchmarks (figures in BENCHMARKS.md)"

bootstrap:
	@scripts/bootstrap.sh

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
	$(PY) scripts/stack.py up

stop:
	@if [ -x $(PY) ]; then $(PY) scripts/stack.py stop; fi

status:
	@$(PY) scripts/stack.py status

bench: proto
	$(PY) scripts/stack.py run -- $(PY) bench/run_all.py

clean: stop
	rm -rf var
