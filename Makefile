# The two commands of the README. Both set the machine up first (scripts/setup.sh).
THREADS ?= 2
export TVM_NUM_THREADS := $(THREADS)

.PHONY: setup demo test test-arm lint

setup:
	./scripts/setup.sh

# Main job: AIQ on the pretrained ResNet-20 with real Fashion-MNIST data.
demo: setup
	.venv/bin/aiq-tvm run --model resnet20 --search greedy --lam 0.9 --out results

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check aiq_tvm passes targets tests scripts

# aarch64 under emulation: builds the emulated board (scripts/arm/setup_emulation.sh, ~2 min the
# first time) and runs the Arm tests against it. Not part of `make test` (see docs/arm.md).
test-arm: setup
	./scripts/arm/setup_emulation.sh
	AIQ_TEST_ARM=1 .venv/bin/python -m pytest -q tests/test_arm*.py
