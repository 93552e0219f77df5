# The two commands of the README: `make demo` and `make test`.  Each sets up
# everything it needs on a fresh machine: a virtual environment with the
# package and its extras, and Graphviz's `dot` (apt-get) when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test dot docs bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,examples,array-api,distributed]"
	touch $(STAMP)

dot:
	@command -v dot >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq graphviz >/dev/null; } \
	  || echo "warning: could not install graphviz; SVG tests will be skipped"

demo: $(STAMP) dot
	$(VENV)/bin/graphgrad demo

test: $(STAMP) dot
	$(PY) -m pytest

# figures and formulas are drawn by graphgrad itself while building (docs/gen_figures.py)
docs: $(STAMP) dot
	$(VENV)/bin/mkdocs build --strict -d site

clean:
	rm -rf $(VENV) out .pytest_cache
