# The two commands of the README. Both set the machine up first (scripts/setup.sh).
THREADS ?= 2
export TVM_NUM_THREADS := $(THREADS)

.PHONY: setup demo test test-arm lint

setup:
	./scripts/setup.sh

# Main job: AIQ on the pretrained ResNet-20 with real Fashion-MNIST data.
demo: setup
	.venv/bin/aiq-tvm run --model resnet20 --search greedy --lam 0.9 --out results

# Two pytest workers, one file each at a time: the suite is mostly single-threaded LLVM
# compiles, so a second worker halves its wall time on 2 cores. JOBS=0 runs it in one process.
JOBS ?= 2
test: setup
	.venv/bin/python -m pytest -q --durations=15 $(if $(filter 0,$(JOBS)),,-n $(JOBS) --dist loadfile)

lint: setup
	.venv/bin/ruff check aiq_tvm passes targets tests scripts

# aarch64 under emulation: builds the emulated board (scripts/arm/setup_emulation.sh, ~2 min the
# first time) and runs the Arm tests against it. Not part of `make test` (see docs/arm.md).
test-arm: setup
	./scripts/arm/setup_emulation.sh
	AIQ_TEST_ARM=1 .venv/bin/python -m pytest -q tests/test_arm*.py
