# `make demo` and `make test` work on a fresh machine: they bootstrap what they need first.
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= train,lite,onnx,camera,triton,openvino,dev
DEMO_DIR ?= demo
PYTEST_ARGS ?=

.PHONY: bootstrap test demo lint bench clean

bootstrap:
	@VENV=$(VENV) ./scripts/bootstrap.sh $(EXTRAS)

# The suite, then the packaging check: the wheel installed non-editable, the edge install without torch.
test: bootstrap
	$(PY) -m pytest -q $(PYTEST_ARGS)
	@VENV=$(VENV) ./scripts/check_wheel.sh

demo: bootstrap
	$(PY) -m anodet.demo --out $(DEMO_DIR)

lint: bootstrap
	$(VENV)/bin/ruff check anodet tests benchmarks

bench: bootstrap
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
