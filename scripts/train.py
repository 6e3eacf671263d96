"""Train ResNet-20 and/or MobileNetV2 on Fashion-MNIST (CIFAR-10 input format) on the CPU.

Trains on the Fashion-MNIST training split minus the held-out pool of
:mod:`aiq_tvm.datasets` (calibration/validation images are never trained on), reports the
held-out validation accuracy after every epoch, evaluates on the official 10k test split at
the end and writes float32 state dicts named as :func:`aiq_tvm.models.weights_path` expects.

Example::

    python scripts/train.py --model resnet20 --epochs 30 --out aiq_tvm/models/weights --threads 2
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

# On a shared CPU, OpenMP threads that spin-wait at barriers stall whenever another process
# preempts one of them (measured: 2.6 s instead of 0.2 s per MobileNetV2 step); sleeping
# waiters avoid that. Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from aiq_tvm import datasets  # noqa: E402
from aiq_tvm.models import MODEL_NAMES, evaluate_accuracy, get_model, weights_path  # noqa: E402

# Value of a black (0) pixel after normalisation; used as the fill of the crop padding so the
# extra border looks like the background rather than mid-grey.
_BACKGROUND = -datasets.FASHION_MNIST_MEAN / datasets.FASHION_MNIST_STD


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random 32x32 crop of the ``pad``-padded batch plus random horizontal flip.

    Parameters
    ----------
    x : torch.Tensor
        Batch, shape (B, C, H, W).
    gen : torch.Generator
        Source of randomness (keeps the augmentation reproducible).
    pad : int, default 4
        Padding per side before cropping back to H x W.

    Returns
    -------
    torch.Tensor
        Augmented batch of the same shape.
    """
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), value=_BACKGROUND)
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=gen)
    flips = torch.rand(b, generator=gen) < 0.5
    out = torch.empty_like(x)
    for i in range(b):
        dy, dx = int(offsets[i, 0]), int(offsets[i, 1])
        crop = padded[i, :, dy : dy + h, dx : dx + w]
        out[i] = crop.flip(-1) if flips[i] else crop
    return out


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split parameters so that only conv/linear weights are decayed (not BN, not biases)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim > 1 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def train_model(name: str, args: argparse.Namespace) -> None:
    """Train one model, print its test accuracy and save its weights."""
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    x_all, y_all = datasets.fashion_mnist("train", root=args.root)
    idx = datasets.train_indices()
    x_train = torch.from_numpy(x_all[idx])
    y_train = torch.from_numpy(y_all[idx])
    del x_all, y_all
    x_val, y_val = datasets.validation_set(n=args.val_size, seed=0, root=args.root)

    model = get_model(name)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.SGD(
        param_groups(model, args.weight_decay),
        lr=args.lr,
        momentum=0.9,
        nesterov=True,
    )
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    warmup_steps = min(args.warmup_epochs * steps_per_epoch, total_steps - 1)

    def lr_factor(step: int) -> float:
        # Linear warm-up, then cosine decay to 0 over the remaining steps (per iteration).
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)

    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"[{name}] {n_params:,} parameters, {len(x_train):,} training images, "
        f"{args.epochs} epochs x {steps_per_epoch} steps, batch {args.batch_size}, "
        f"lr {args.lr}, wd {args.weight_decay}, label smoothing {args.label_smoothing}, "
        f"{torch.get_num_threads()} threads",
        flush=True,
    )
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        epoch_start = time.time()
        order = torch.randperm(len(x_train), generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"{name} epoch {epoch + 1}/{args.epochs}",
            mininterval=args.tqdm_interval,
            ncols=100,
        )
        for step in bar:
            batch = order[step * args.batch_size : (step + 1) * args.batch_size]
            xb = augment(x_train[batch], gen).contiguous(memory_format=memory_format)
            yb = y_train[batch]
            logits = model(xb)
            loss = criterion(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss) * len(batch)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(batch)
            bar.set_postfix(
                loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False
            )
        bar.close()
        val_acc = evaluate_accuracy(model, x_val, y_val)
        print(
            f"[{name}] epoch {epoch + 1}/{args.epochs}: loss {loss_sum / seen:.4f}, "
            f"train acc {correct / seen:.4f}, held-out val acc {val_acc:.4f}, "
            f"lr {optimizer.param_groups[0]['lr']:.5f}, "
            f"epoch time {time.time() - epoch_start:.1f} s",
            flush=True,
        )
    train_time = time.time() - start

    model = model.to(memory_format=torch.contiguous_format).eval()
    x_test, y_test = datasets.fashion_mnist("test", root=args.root)
    test_acc = evaluate_accuracy(model, x_test, y_test)

    out = Path(args.out) / weights_path(name).name
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().float() if v.is_floating_point() else v.detach()).contiguous().clone()
        for k, v in model.state_dict().items()
    }
    # Write to a temporary file first so an interrupted save never leaves a broken weights file.
    tmp = out.with_name(out.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out)
    print(
        f"[{name}] done: epochs {args.epochs}, wall time {train_time / 60:.1f} min "
        f"({train_time:.0f} s), test accuracy {100 * test_acc:.2f} % "
        f"({round(test_acc * len(y_test))}/{len(y_test)}), weights -> {out}",
        flush=True,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", choices=[*MODEL_NAMES, "all"], default="all")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--out", default="aiq_tvm/models/weights", help="output directory")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-size", type=int, default=1000, help="held-out validation images")
    p.add_argument("--root", default=None, help="Fashion-MNIST directory")
    p.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        help="train in NCHW instead of channels-last memory format (slower on CPU)",
    )
    p.add_argument("--tqdm-interval", type=float, default=30.0, help="seconds between updates")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error("--epochs must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """Train the requested model(s) one after another (ResNet-20 first for ``all``)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    names = list(MODEL_NAMES) if args.model == "all" else [args.model]
    for name in names:
        train_model(name, args)


if __name__ == "__main__":
    main()
