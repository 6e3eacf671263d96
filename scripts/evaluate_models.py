"""Print the FP32 test accuracy and parameter count of the shipped pretrained models.

Evaluates every model of :data:`aiq_tvm.models.MODEL_NAMES` with its weights from
``aiq_tvm/models/weights`` on the official 10,000-image Fashion-MNIST test split.

Example::

    python scripts/evaluate_models.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import time

# Sleeping (not spinning) OpenMP waiters keep a shared CPU usable; see scripts/train.py.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from aiq_tvm import datasets  # noqa: E402
from aiq_tvm.models import MODEL_NAMES, evaluate_accuracy, get_model  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """Evaluate the pretrained models and print one line per model."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--root", default=None, help="Fashion-MNIST directory")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    x, y = datasets.fashion_mnist("test", root=args.root)
    print(f"Fashion-MNIST test split: {len(y)} images, {torch.get_num_threads()} threads")
    for name in MODEL_NAMES:
        model = get_model(name, pretrained=True)
        n_params = sum(p.numel() for p in model.parameters())
        start = time.time()
        acc = evaluate_accuracy(model, x, y, batch_size=args.batch_size)
        print(
            f"{name:<13} params {n_params:>9,}  test accuracy {100 * acc:.2f} % "
            f"({round(acc * len(y))}/{len(y)})  [{time.time() - start:.1f} s]",
            flush=True,
        )


if __name__ == "__main__":
    main()
