# Two entry points: `make demo` and `make test`. Both create .venv when missing and install
# exactly the hashed versions of requirements.lock (refresh it with `make lock`).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
EXTRAS := --extra onnx --extra serve --extra plot --extra compress --extra test

.PHONY: demo test install lock clean

$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/inkpack demo

# One BLAS thread: tensorly's numpy maths spins on threads when the 2 cores are shared.
test: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest tests

# Re-resolve every dependency (newest versions within pyproject.toml's bounds and
# lock-constraints.txt) into requirements.lock, with hashes. Review the diff, then `make test`.
lock:
	test -x .venv-lock/bin/pip-compile || ($(PY) -m venv .venv-lock && .venv-lock/bin/pip install -q pip-tools)
	.venv-lock/bin/pip-compile -q --upgrade --generate-hashes --allow-unsafe --all-build-deps \
	  --strip-extras --no-emit-find-links --no-emit-index-url $(EXTRAS) \
	  -c lock-constraints.txt -o $(LOCK) pyproject.toml

clean:
	rm -rf $(VENV) .venv-lock build *.egg-info src/*.egg-info
