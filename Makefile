# The two commands: `make run` and `make test`. Everything installs itself into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: run serve dev test test-fast lock lint ruff format bench lighthouse browser services pygments-css translations clean help

help:
	@echo "make run    - install into .venv and serve the app with gunicorn (gunicorn.conf.py) on http://\$${HOST:-127.0.0.1}:\$${PORT:-8000}"
	@echo "make dev    - the same with Flask's development server, restarting when a source file changes"
	@echo "make serve  - the same as make run (kept for scripts that call it)"
	@echo "make test   - install test tools (and Debian's chromium and its headless shell), lint, run every test"
	@echo "make test-fast - lint, type-check, and the tests that need no browser and no services"
	@echo "make bench  - run the benchmarks (and Lighthouse) and write bench/RESULTS.md"
	@echo "make format - format the code with ruff"
	@echo "make lock   - compile requirements*.txt (pinned, hashed) from requirements*.in"
	@echo "make services - install Debian's postgresql and redis-server for the tests (make test does)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# uv installs the locks: the dev lock takes it about 4 s from an empty cache, pip about 100 s
# with a full one. uv itself is installed by pip, from its own lock (requirements-uv.txt).
$(BIN)/uv: requirements-uv.txt | $(PY)
	$(PY) -m pip install --quiet --require-hashes -r requirements-uv.txt
	@touch $@

# requirements*.txt are locks with a hash for every file: uv refuses anything else. uv trusts the
# system's certificate store, as pip does, so a proxy's CA installed there is trusted too (uv's
# own roots would refuse it).
UV_INSTALL := $(BIN)/uv pip install --quiet --system-certs --python $(PY) --require-hashes

$(VENV)/.runtime: requirements.txt | $(BIN)/uv
	$(UV_INSTALL) -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/uv
	$(UV_INSTALL) -r requirements-dev.txt
	@touch $@ $(VENV)/.runtime

# After changing requirements.in, requirements-dev.in or requirements-uv.in: compile the locks
# again (pip-tools, in a venv of its own), every version pinned and every file hashed.
lock:
	$(PYTHON) -m venv .lock-tools
	.lock-tools/bin/python -m pip install --quiet pip-tools==7.6.2
	for name in requirements requirements-dev requirements-uv; do \
		.lock-tools/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
			--no-emit-index-url --no-emit-find-links --output-file $$name.txt $$name.in || exit 1; \
	done
	rm -rf .lock-tools

# The production server, gunicorn, with threaded workers for streams; gunicorn.conf.py reads and
# checks HOST, PORT, DATA_DIR, OPENAI_* ... from the environment or .env. `exec`: no shell stays
# between make and gunicorn, which stops gracefully on SIGTERM or Ctrl+C.
run: $(VENV)/.runtime
	exec $(BIN)/gunicorn --config gunicorn.conf.py

serve: run

# Development: Werkzeug's server with the reloader (python -m app --reload).
dev: $(VENV)/.runtime
	exec $(PY) -m app --reload

# Browser tests use Debian's chromium and its headless shell (the same build without the browser's
# windows: most tests run there, at a third of the CPU); Playwright's own browser download does
# not work here.
CHROMIUM_PACKAGES := chromium chromium-headless-shell
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromium-headless-shell ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's $(CHROMIUM_PACKAGES) for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CHROMIUM_PACKAGES) >/dev/null; \
	else \
		echo "Browser tests need /usr/bin/chromium and /usr/bin/chromium-headless-shell: run 'sudo apt-get install $(CHROMIUM_PACKAGES)'" >&2; exit 1; \
	fi

# The tests start their own PostgreSQL and Redis on free 127.0.0.1 ports (tests/support/services.py), from
# Debian's packages; a cluster or redis the packages may start themselves is not used.
services:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v redis-server >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's postgresql and redis-server for the tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null; \
	else \
		echo "Tests need PostgreSQL and redis-server: run 'sudo apt-get install postgresql redis-server'" >&2; exit 1; \
	fi

lint: ruff
	$(BIN)/mypy

ruff: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# axe-core for the accessibility tests, pinned in tests/js/package-lock.json.
tests/js/node_modules/.package-lock.json: tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --loglevel=error

# pytest keeps its rewritten test modules in __pycache__ (about 12 s of collecting otherwise, in
# every worker of every run), even where the environment asks Python not to write bytecode.
# The tests' temporary files (data folders, PostgreSQL clusters, browser profiles) go to memory
# when /dev/shm is a writable tmpfs with 4 GB free: their thousands of fsync calls then cost
# nothing (a crash the tests stage is a killed process, never a power cut). Elsewhere, $TMPDIR.
TEST_TMPDIR := $(shell [ -d /dev/shm ] && [ -w /dev/shm ] && [ "$$(df -Pk /dev/shm | awk 'NR == 2 {print $$4}')" -gt 4000000 ] 2>/dev/null && echo /dev/shm)
PYTEST := PYTHONDONTWRITEBYTECODE= $(if $(TEST_TMPDIR),TMPDIR=$(TEST_TMPDIR)) $(BIN)/pytest
# One pytest-xdist worker per core and one more: many tests spend part of their time waiting on
# a server, a browser or a child process, which the extra worker fills. More workers cost more
# than they fill: on 2 cores, pytest took 384 s with 4 workers, 337 s with 3, 355 s with 2 (one
# working tree, one after the other).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

# mypy runs beside the tests, not before them: it is one process on one core (about 40 s from a
# fresh clone, with no cache), which the tests would otherwise wait for. Its report is printed when
# it ends; type errors fail `make test` once the tests are done. Ctrl-C or a kill stops it too.
PYTEST_ALL = $(PYTEST) -n $(TEST_WORKERS) --dist worksteal --durations=10
test: $(VENV)/.dev browser services ruff tests/js/node_modules/.package-lock.json
	@echo "$(BIN)/mypy (beside the tests)"
	@echo "$(PYTEST_ALL)"
	@( $(BIN)/mypy > $(VENV)/mypy.log 2>&1 & mypy=$$!; trap 'kill $$mypy 2>/dev/null; exit 143' TERM; \
	   wait $$mypy; status=$$?; echo; sed 's/^/mypy: /' $(VENV)/mypy.log; exit $$status ) & types=$$!; \
	trap 'kill $$types 2>/dev/null' INT TERM EXIT; \
	$(PYTEST_ALL); tests=$$?; \
	wait $$types; types_status=$$?; trap - EXIT; \
	if [ $$types_status != 0 ]; then echo "make test: mypy did not pass (status $$types_status; its report, if it ended, is above)" >&2; exit 1; fi; \
	exit $$tests

# The inner loop: lint and type checks, then every test that needs no browser, no services and
# no real server processes (marker slow).
test-fast: $(VENV)/.dev lint
	FUZZ_EXAMPLES=25 $(PYTEST) -n $(TEST_WORKERS) -m "not browser and not services and not slow" -q

# LiteLLM's proxy in a venv of its own, measured beside the app (bench/stream_bench.py).
bench/litellm/.venv/.installed: bench/litellm/requirements.txt
	$(PYTHON) -m venv bench/litellm/.venv
	bench/litellm/.venv/bin/python -m pip install --quiet -r bench/litellm/requirements.txt
	@touch $@

bench: $(VENV)/.dev browser services bench/litellm/.venv/.installed
	$(PY) -m bench
	$(MAKE) lighthouse

# Lighthouse 12 (pinned in bench/lighthouse; 13 needs Node 22) on / in Debian's chromium;
# appends its scores to bench/RESULTS.md.
bench/lighthouse/node_modules/.package-lock.json: bench/lighthouse/package.json bench/lighthouse/package-lock.json
	npm ci --prefix bench/lighthouse --no-audit --no-fund --loglevel=error

lighthouse: $(VENV)/.dev browser bench/lighthouse/node_modules/.package-lock.json
	$(PY) -m bench.lighthouse

# After changing UI text: extract the messages (babel.cfg: app/ and templates/), merge them into
# each catalogue, translations/<lang>/LC_MESSAGES/messages.po, which is where the translations are
# written (existing ones stay; nothing is guessed, so nothing is marked fuzzy), stop naming every
# message left untranslated or fuzzy or with other placeholders (translations/check.py), compile.
translations: $(VENV)/.dev
	$(BIN)/pybabel extract -F babel.cfg -k N_ -o translations/messages.pot --no-location --omit-header .
	$(BIN)/pybabel update -i translations/messages.pot -d translations --no-fuzzy-matching --width 100
	$(PY) translations/check.py
	$(BIN)/pybabel compile -d translations

# Regenerate the syntax-highlighting stylesheet (after a Pygments upgrade).
pygments-css: $(VENV)/.runtime
	$(PY) -c "from app.rendering import pygments_css; open('static/css/pygments.css', 'w').write(pygments_css())"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
