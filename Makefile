# The README's two commands: `make run` and `make test`. Both build .venv from the lock file.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.lock | cut -c1-16)

.PHONY: run test lint bench screenshots lock clean

$(STAMP): requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Sundial needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	rm -f $(VENV)/.installed-*
	touch $@

# ADDR=host:port moves the web server (default 127.0.0.1:8000).
run: $(STAMP)
	$(BIN)/python manage.py run $(if $(ADDR),--addr $(ADDR))

test: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/engine_step.py
	$(BIN)/python bench/local_submit.py
	$(BIN)/python bench/dag_overhead.py
	$(BIN)/python bench/poller.py
	$(BIN)/python bench/pages.py
	$(BIN)/python bench/alerts.py

# The README's pictures: docs/screenshots/*.png from a throwaway Sundial (needs chromium).
screenshots: $(STAMP)
	$(BIN)/python scripts/screenshots.py

# Regenerate the lock file after changing pyproject.toml (needs uv: pip install uv).
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --universal -o requirements.lock

clean:
	rm -rf $(VENV) var
