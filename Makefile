# The two commands of the README. Both set the machine up first (scripts/setup.sh).
THREADS ?= 2
export TVM_NUM_THREADS := $(THREADS)

.PHONY: setup demo test lint

setup:
	./scripts/setup.sh

# Main job: AIQ on the pretrained ResNet-20 with real Fashion-MNIST data.
demo: setup
	.venv/bin/aiq-tvm run --model resnet20 --search greedy --lam 0.9 --out results

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check aiq_tvm passes targets tests scripts
