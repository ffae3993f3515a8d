# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install install-check demo test docs lint bench bench-quick catalogue-snapshot clean

$(BIN)/otelfin: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/otelfin

# Build the wheel and install it (plain and [all]) into fresh Python 3.10 and 3.13 venvs with
# the pip each ships, then pip check, import and `otelfin --help`.
install-check:
	.ci/install_check

demo: install
	$(BIN)/otelfin demo

test: install
	$(BIN)/python -m pytest
	$(BIN)/ruff check otelfin tests benchmarks examples
	$(BIN)/ruff format --check otelfin
	$(BIN)/mypy

# The documentation site (docs/, mkdocs.yml) into build/site; strict: a broken link fails.
# `make test` builds it too (tests/test_docs_build.py) and runs every example in it.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: install
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Every benchmark in its quick mode (a few short rounds): proves each script still runs against
# the current code, so none rots. Figures from this are not to be quoted. .ci/run runs it.
bench-quick: install
	@for b in benchmarks/bench_*.py benchmarks/e2e_overhead.py benchmarks/e2e_instructions.py; do \
	  echo "== $$b --quick"; $(BIN)/python $$b --quick || exit 1; done
	@echo "== benchmarks/e2e_instructions.py --components --quick"
	@$(BIN)/python benchmarks/e2e_instructions.py --components --quick

# After editing otelfin/errorcodes.yaml: write the pre-parsed copy configure() reads at start-up
# (tests/test_catalogue.py fails until it matches the YAML).
catalogue-snapshot: install
	$(BIN)/python -c 'from otelfin import catalogue; print(catalogue._write_snapshot())'

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
