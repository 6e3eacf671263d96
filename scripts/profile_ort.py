"""ONNX Runtime's own per-node profile of a torchvision model at 224 x 224, exported and
quantized as ``scripts/bench_models.py`` does (FP32, or ``--int8``: QDQ static INT8), to put
beside our kernel times (``scripts/profile_layers.py``, ``scripts/profile_insitu.py``).

Prints the median ``model_run`` time of ``--runs`` profiled runs, ORT's time per op type and
one line per node (median kernel time in ms, input -> output shape). Run it under the lock::

    flock /work/bench.lock python scripts/profile_ort.py --model resnet50 --batch 1 [--int8]
        [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _shape(arg) -> str:
    try:
        return "x".join(map(str, next(iter(arg[0].values()))))
    except (IndexError, TypeError, AttributeError, StopIteration):
        return "?"


def node_times(events: list, runs: int) -> list[tuple[str, str, float, str]]:
    """(node, op, median us over the last ``runs`` runs, shapes) in execution order."""
    per, info = defaultdict(list), {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            name = e["name"][: -len("_kernel_time")]
            per[name].append(e["dur"])
            a = e.get("args", {})
            shapes = f"{_shape(a.get('input_type_shape'))} -> {_shape(a.get('output_type_shape'))}"
            info[name] = (a.get("op_name"), shapes)
    return [(n, info[n][0], float(np.median(d[-runs:])), info[n][1]) for n, d in per.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet50",
                    help="torchvision model name, or timm/NAME (bench_models.py's spelling)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--int8", action="store_true", help="ORT static INT8 (QDQ)")
    args = ap.parse_args()
    import onnxruntime as ort
    import torch
    from bench_models import load_model, quantize_onnx_int8

    model, xc = load_model(args.model if "/" in args.model else "tv/" + args.model, 224)
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "model.onnx"
    torch.onnx.export(model, (torch.from_numpy(xc[:1]),), str(path), dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}})
    if args.int8:
        quantize_onnx_int8(str(path), str(tmp / "model.int8.onnx"), xc)
        path = tmp / "model.int8.onnx"
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    if args.threads == 1:
        so.inter_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp / "prof")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(np.resize(xc, (args.batch, *xc.shape[1:])), np.float32)
    for _ in range(5 + args.runs):
        sess.run(None, {"x": x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    runs = [e["dur"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    rows = node_times(events, args.runs)
    kind = "int8" if args.int8 else "fp32"
    print(f"ORT {kind} {args.model} batch {args.batch}, {args.threads} threads: model_run "
          f"median {np.median(runs[-args.runs:]) / 1e3:.3f} ms, node sum "
          f"{sum(r[2] for r in rows) / 1e3:.3f} ms\n")
    by_op: dict[str, float] = defaultdict(float)
    for _, op, us, _ in rows:
        by_op[op] += us
    for op, us in sorted(by_op.items(), key=lambda kv: -kv[1]):
        print(f"{op}: {us / 1e3:.3f} ms")
    print("\n| node | op | ms | shapes |\n|---|---|---|---|")
    for name, op, us, shapes in rows:
        print(f"| {name} | {op} | {us / 1e3:.4f} | {shapes} |")


if __name__ == "__main__":
    main()
