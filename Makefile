# exobot: `make demo` runs it on a local stack; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_MAILS ?= 1000
BENCH_SAMPLES ?= 50
BENCH_COMMANDS ?= 100
BENCH_MATRIX_MAILS ?= 20
BENCH_WEB_TICKETS ?= 100000
BENCH_WEB_ENTRIES ?= 500000
BENCH_WEB_SAMPLES ?= 200
BENCH_HOSTILE ?= 100
BENCH_HOSTILE_NORMAL ?= 10
BENCH_CONNECTIVITY_TARGETS ?= 100
BENCH_CONNECTIVITY_ROUNDS ?= 5
BENCH_SENSITIVE_SIZE ?= 1048576
BENCH_E2E_MAILS ?= 1000

.PHONY: venv stack demo test test-long bench bench-smoke lint clean catalogs mo image-check

# The bundled plugins (plugins/NAME/, each its own distribution) are installed with exobot,
# in one pip run; a change to any of their pyproject files installs again.
PLUGIN_PROJECTS := $(wildcard plugins/*/pyproject.toml)

$(STAMP): pyproject.toml $(PLUGIN_PROJECTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' $(foreach project,$(PLUGIN_PROJECTS),-e $(dir $(project)))
	touch $(STAMP)

# Compiled catalogs (.mo, never committed) for the dev tree; cheap when nothing changed.
MO_FILES := $(patsubst %.po,%.mo,$(wildcard exobot/locale/*/LC_MESSAGES/*.po))

$(MO_FILES): %.mo: %.po $(STAMP)
	$(PY) -m exobot.catalogs compile

mo: $(MO_FILES)

venv: $(STAMP) mo

# After changing strings: extract the message ids (Python and templates) into exobot.pot and
# merge them into every language's .po, for translators (Poedit, Weblate) and developers.
catalogs: $(STAMP)
	$(PY) -m exobot.catalogs update
	$(PY) -m exobot.catalogs compile

# Servers the tests and the demo need (Dovecot, PostgreSQL from apt; Synapse in its own venv).
stack: venv
	$(PY) -m devstack install

demo: stack
	$(PY) -m devstack.demo run

test: stack
	$(PY) -m ruff check exobot plugins tests devstack bench
	$(PY) -m pytest -q

# The soak (tests/long): a real `exobot run` under four writers for EXOBOT_SOAK_SECONDS
# (default 600) on SQLite, then on PostgreSQL; its figures are printed at the end.
test-long: stack
	$(PY) -m pytest -q -m long tests/long

bench: stack
	$(PY) bench/bench_e2e.py --mails $(BENCH_E2E_MAILS)
	$(PY) bench/bench_mail.py --mails $(BENCH_MAILS) --latency-samples $(BENCH_SAMPLES)
	$(PY) bench/bench_matrix.py --commands $(BENCH_COMMANDS) --mails $(BENCH_MATRIX_MAILS)
	$(PY) bench/bench_web.py --tickets $(BENCH_WEB_TICKETS) --entries $(BENCH_WEB_ENTRIES) \
		--samples $(BENCH_WEB_SAMPLES)
	$(PY) bench/bench_web.py --tickets $(BENCH_WEB_TICKETS) --entries $(BENCH_WEB_ENTRIES) \
		--samples $(BENCH_WEB_SAMPLES) --database postgresql --no-api
	$(PY) bench/bench_hostile.py --hostile $(BENCH_HOSTILE) --normal $(BENCH_HOSTILE_NORMAL)
	$(PY) bench/bench_connectivity.py --targets $(BENCH_CONNECTIVITY_TARGETS) \
		--rounds $(BENCH_CONNECTIVITY_ROUNDS)
	$(PY) bench/bench_sensitive.py --size $(BENCH_SENSITIVE_SIZE)

bench-smoke:
	$(MAKE) bench BENCH_MAILS=100 BENCH_SAMPLES=5 BENCH_COMMANDS=10 BENCH_MATRIX_MAILS=3 \
		BENCH_WEB_TICKETS=5000 BENCH_WEB_ENTRIES=25000 BENCH_WEB_SAMPLES=20 \
		BENCH_HOSTILE=8 BENCH_HOSTILE_NORMAL=2 \
		BENCH_CONNECTIVITY_TARGETS=20 BENCH_CONNECTIVITY_ROUNDS=2 BENCH_SENSITIVE_SIZE=65536 \
		BENCH_E2E_MAILS=50

# Build the container image from a clean clone with podman and run it against the test stack
# (root; installs podman, runc and debootstrap when missing): devstack/image_check.py.
image-check: stack
	$(PY) -m devstack.image_check

lint: venv
	$(PY) -m ruff check exobot plugins tests devstack bench

clean:
	rm -rf $(VENV) .stack var/demo .pytest_cache .ruff_cache
