# streamdist: two commands on a fresh machine, `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_WORKERS ?= 2

.PHONY: all venv ui deps node-deps bins demo demo-down test test-unit test-integration test-media lint bench clean

all: test

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# The control room's CSS (Bootstrap, from the npm registry) into the package; skipped when current.
ui:
	bash hack/build-ui.sh

# Debian packages (FFmpeg with libsrt, srt-tools, openssl, lua) and the real parts
# built from the Go module proxy into ~/.cache/streamdist (skipped when present).
deps: venv ui
	bash hack/install-debs.sh
	bash hack/build-bins.sh
	bash hack/build-mediamtx.sh
	bash hack/build-prometheus.sh >/dev/null
	$(MAKE) node-deps

# The local real node (tests/e2e, make demo): containerd, runc, CNI, ipset from Debian;
# CoreDNS and kube-router (its NetworkPolicy controller: the node's enforcer, never
# shipped) from the Go module proxy; the images built locally (the operator's too: the
# chart runs it on the node). Skipped where it cannot run (not root).
node-deps:
	if [ "$$(id -u)" = 0 ]; then \
	  bash hack/install-node-debs.sh && \
	  bash hack/node/build-coredns.sh && \
	  bash hack/node/build-kube-router.sh && \
	  bash hack/build-images.sh pause mediamtx ffmpeg operator; \
	else echo "node-deps: not root: the real node is not built (tests/e2e will say so)"; fi

lint: venv
	$(VENV)/bin/ruff check operator dev tests bench hack images
	$(VENV)/bin/mypy
	MYPYPATH=images/ffmpeg $(VENV)/bin/mypy --strict images/ffmpeg/streamdist_switch.py images/ffmpeg/streamdist_confidence.py

test: deps lint
	bash hack/run-tests.sh

test-unit: venv ui
	$(VENV)/bin/pytest -q tests/unit

demo: deps
	bash hack/demo.sh

demo-down:
	bash hack/demo.sh down

bench: deps
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .state

# manifests/install.yaml and the chart's CRD copies, generated from charts/streamdist
# (tests/install fails when either drifts from the chart or from crds/).
.PHONY: manifests
manifests:
	bash hack/gen-install.sh
