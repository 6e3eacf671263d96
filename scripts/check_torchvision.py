"""Does every torchvision classification CNN import, build and match torch at FP32 and INT8?

Segmentation models (``SEGMENTATION_MODELS``: LR-ASPP, DeepLabV3, FCN) are checked the same
way with ``--models``: their ``"out"`` map, the cosine over each image's map, the top-1 agreement
per pixel.

For each model (``aiq_tvm.models.torchvision_zoo``: ``weights=None``, seeded, batch-norm
statistics set on real Fashion-MNIST images resized to ``--size``): import with
``aiq_tvm.from_torch``, build uniform ``fp32`` and ``int8`` plans, run both on validation-pool
images at ``--size`` x ``--size`` x 3 and compare with torch:

* FP32: relative error ``max |tvm - torch| / max |torch|`` over all logits, must be < 1e-4;
* INT8: cosine similarity of each image's logits to torch's, the smallest must be >= 0.99.

With ``--ort`` the same images also go through ONNX Runtime's static INT8 (QDQ, per-channel,
u8/s8, same calibration images) as a reference for what INT8 can reach on random weights.
The report lists the layers that have no AIQ kernel (they run FP32, with the reason) and the
other operator kinds left to TVM's own kernels. Each model runs in its own subprocess (memory,
crashes and ``--timeout`` stay per model); results are JSON lines, rendered as a Markdown
table; ``--update docs/models.md`` replaces the table between the coverage markers there.

    TVM_NUM_THREADS=2 python scripts/check_torchvision.py --all --ort \
        --lock /work/wt/bench.lock --jsonl cov.jsonl
    python scripts/check_torchvision.py --render cov.jsonl --update docs/models.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from aiq_tvm.weight_correction import DEFAULT_WEIGHT_CORRECTION, WEIGHT_CORRECTIONS

FP32_TOL = 1e-4
# Models written timm/<name> are timm's (aiq_tvm.models.torchvision_zoo.timm_model; pip install
# timm): held-out architectures beyond torchvision's.
TIMM_PREFIX = "timm/"
INT8_MIN_COS = 0.99
BEGIN, END = "<!-- torchvision-coverage:begin -->", "<!-- torchvision-coverage:end -->"


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row (image) of ``a`` to the same row of ``b`` (a
    segmentation map is flattened)."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(cosines(a, b).min())


def median_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Less noisy than the minimum when two builds are compared."""
    return float(np.median(cosines(a, b)))


def rel_error(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-30))


def glue_ops(annotated) -> dict[str, int]:
    """Relax operator kinds outside the AIQ layers (TVM's own kernels), with counts; calls
    computing only on weights (bias reshapes, folded at build time) are not counted."""
    import tvm
    from tvm import relax

    main = annotated["main"]
    weight_only = set(main.params[1:])  # main(x, *weights)
    ops: Counter = Counter()
    for block in main.body.blocks:
        for b in block.bindings:
            call = b.value
            if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op)):
                continue
            args = [a for a in call.args if isinstance(a, relax.Var)]
            if args and all(a in weight_only for a in args):
                weight_only.add(b.var)
            else:
                ops[call.op.name.removeprefix("relax.")] += 1
    return dict(sorted(ops.items()))


def _ort_int8_logits(model, calib: np.ndarray, x: np.ndarray, batch: int) -> np.ndarray:
    import tempfile

    import onnxruntime as ort
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_models import quantize_onnx_int8

    tmp = Path(tempfile.mkdtemp())
    torch.onnx.export(model, (torch.from_numpy(calib[:1]),), str(tmp / "m.onnx"), dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}})
    quantize_onnx_int8(str(tmp / "m.onnx"), str(tmp / "q.onnx"), calib)
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(os.environ.get("TVM_NUM_THREADS", "2"))
    sess = ort.InferenceSession(str(tmp / "q.onnx"), so, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"x": x[i:i + batch]})[0]
                           for i in range(0, len(x), batch)])


def _round_to_uint8(x: np.ndarray, calib: np.ndarray) -> np.ndarray:
    """``x`` rounded to the uint8 grid of the calibration images' min-max range: what any
    8-bit first layer reads. Torch FP32 on it gives the cosine that 8-bit input alone costs."""
    from aiq_tvm.quant import ActQParams, dequantize_act, quantize_act

    qp = ActQParams.from_range(float(calib.min()), float(calib.max()))
    return dequantize_act(quantize_act(x, qp), qp).astype(np.float32)


def _torch_logits(model, x: np.ndarray, batch: int) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i:i + batch])).numpy()
                               for i in range(0, len(x), batch)])


def _torch_logits_fp64(model, x: np.ndarray, batch: int) -> np.ndarray:
    """Torch's logits computed in float64 (a copy of the model): the reference both float32
    implementations round away from."""
    import copy

    return _torch_logits(copy.deepcopy(model).double(), x.astype(np.float64), batch)


def check_one(name: str, size: int, n_val: int, n_calib: int, batch: int, ort: bool,
              calibration: str = "mse", fp64: bool = False,
              weight_correction: str = DEFAULT_WEIGHT_CORRECTION, target: str = "llvm") -> dict:
    """Import, build and compare one model (runs inside the per-model subprocess);
    ``calibration`` is the INT8 build's activation-range method; ``fp64`` also compares our
    FP32 logits and torch's with torch's in float64; ``weight_correction`` is the INT8 build's
    (:mod:`aiq_tvm.weight_correction`); ``target`` the builds' (a target this host cannot run
    is checked through a host build with its numerics, as ``aiq_tvm.build`` does)."""
    import torch

    import aiq_tvm
    from aiq_tvm.models import torchvision_zoo as zoo

    out: dict = {"model": name, "size": size, "calibration": calibration,
                 "weight_correction": weight_correction, "target": target, "family": next(
        (f for f, names in zoo.CNN_FAMILIES.items() if name in names), "other")}
    t0 = time.perf_counter()
    segmentation = name in zoo.SEGMENTATION_MODELS
    if segmentation:
        out["family"] = "segmentation"
    if name.startswith(TIMM_PREFIX):
        out["family"] = "timm"
        model = zoo.timm_model(name[len(TIMM_PREFIX):], size=size)
    else:
        model = (zoo.segmentation_model if segmentation else zoo.torchvision_model)(name,
                                                                                    size=size)
    calib = zoo.calibration_images(n_calib, size)
    x, _ = zoo.validation_images(n_val, size)
    ref = _torch_logits(model, x, batch)
    out["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    out["import_s"] = time.perf_counter() - t0
    for prec in ("fp32", "int8"):
        t0 = time.perf_counter()
        res = aiq_tvm.build(mod, target, params=params, plan=prec, calib_data=calib,
                            batch_size=batch, eval_batch_size=batch, calibration=calibration,
                            weight_correction=weight_correction)
        out[f"{prec}_build_s"] = time.perf_counter() - t0
        y = res.run(x, batch)
        if prec == "fp32":
            out["fp32_rel_err"] = rel_error(y, ref)
            if fp64:
                ref64 = _torch_logits_fp64(model, x, batch)
                out["fp32_rel_err_vs_fp64"] = rel_error(y, ref64)
                out["torch_fp32_rel_err_vs_fp64"] = rel_error(ref, ref64)
            out["aiq_layers"] = len(res.cost.searchable)
            cost = res.cost
            out["unsupported"] = {n: cost[n].reason for n in cost.names if not cost[n].supported}
            out["glue_ops"] = glue_ops(res.annotated)
        else:
            out["int8_min_cos"] = min_cosine(y, ref)
            out["int8_median_cos"] = median_cosine(y, ref)
            out["int8_top1_agree"] = float(np.mean(y.argmax(1) == ref.argmax(1)))  # per pixel
        del res
    out["input_u8_min_cos"] = min_cosine(_torch_logits(model, _round_to_uint8(x, calib), batch),
                                         ref)
    if ort:
        out["ort_int8_min_cos"] = min_cosine(_ort_int8_logits(model, calib, x, batch), ref)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["status"] = "pass" if out["fp32_rel_err"] < FP32_TOL and \
        out["int8_min_cos"] >= INT8_MIN_COS else "fail"
    return out


def declared_params_m(name: str) -> float | None:
    """Parameter count (millions) torchvision declares for a model's weights (no download)."""
    import torchvision

    if name.startswith(TIMM_PREFIX):
        return None  # timm builds the model to count them (done in the check itself)
    try:
        weights = torchvision.models.get_model_weights(name)
    except ValueError:
        return None
    return list(weights)[0].meta["num_params"] / 1e6


def run_in_subprocess(name: str, args) -> dict:
    """One model in a fresh interpreter; a crash or timeout becomes an error record."""
    cmd = [sys.executable, __file__, "--one", name, "--size", str(args.size), "--val",
           str(args.val), "--calib", str(args.calib), "--batch", str(args.batch),
           "--calibration", args.calibration, "--weight-correction", args.weight_correction,
           "--target", args.target]
    cmd += ["--ort"] if args.ort else []
    cmd += ["--fp64"] if args.fp64 else []
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"model": name, "size": args.size, "status": "error",
                "error": f"timeout after {args.timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return {"model": name, "size": args.size, "status": "error",
            "error": f"exit {proc.returncode} after {time.perf_counter() - t0:.0f} s: "
                     + (err[-1][:300] if err else "no output")}


# ----------------------------------------------------------------------------- rendering
def _unsupported_summary(unsupported: dict) -> str:
    reasons = Counter(unsupported.values())
    return "; ".join(f"{n} x {r}" for r, n in reasons.items()) if reasons else "none"


def render(records: list[dict]) -> str:
    """Markdown table of the records, one row per model."""
    head = ("| model | params (M) | size | AIQ layers | FP32 rel. err | INT8 min cos | "
            "INT8 top-1 = torch | ORT INT8 min cos | torch FP32, input rounded to uint8: "
            "min cos | INT8 calibration | build fp32 / int8 (s) | status | "
            "layers without an AIQ kernel (run FP32) | other ops (TVM kernels) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in records:
        if r.get("status") in ("error", "skipped"):
            params = f"{r['params_m']:.1f}" if "params_m" in r else ""
            lines.append(f"| {r['model']} | {params} | {r.get('size', '')} | | | | | | | | | "
                         f"{r['status']} | {r['error']} | |")
            continue
        ort = f"{r['ort_int8_min_cos']:.4f}" if "ort_int8_min_cos" in r else ""
        floor = f"{r['input_u8_min_cos']:.4f}" if "input_u8_min_cos" in r else ""
        # Records before the calibration option used the build default of then, percentile.
        calibration = r.get("calibration", "percentile")
        # Records before the weight corrections: plain max-abs weights.
        if r.get("weight_correction", "none") != "none":
            calibration += f", weights: {r['weight_correction']}"
        glue = ", ".join(f"{k} {v}" for k, v in r["glue_ops"].items())
        fp32_err = f"{r['fp32_rel_err']:.1e}"
        if "fp32_rel_err_vs_fp64" in r:  # both float32 results against torch in float64
            fp32_err += (f" (vs float64: ours {r['fp32_rel_err_vs_fp64']:.1e}, torch's "
                         f"{r['torch_fp32_rel_err_vs_fp64']:.1e})")
        lines.append(
            f"| {r['model']} | {r['params_m']:.1f} | {r['size']} | {r['aiq_layers']} | "
            f"{fp32_err} | {r['int8_min_cos']:.4f} | "
            f"{100 * r['int8_top1_agree']:.0f} % | {ort} | {floor} | {calibration} | "
            f"{r['fp32_build_s']:.0f} / {r['int8_build_s']:.0f} | {r['status']} | "
            f"{_unsupported_summary(r['unsupported'])} | {glue} |")
    lines += _unsupported_names(records)
    return "\n".join(lines)


def _unsupported_names(records: list[dict]) -> list[str]:
    """Below the table: the names of the layers without an AIQ kernel, per model."""
    rows = [f"- {r['model']}: " + ", ".join(f"`{n}`" for n in r["unsupported"])
            for r in records if r.get("unsupported")]
    return ["", "Layers without an AIQ kernel (they run FP32), by model:", "", *rows] if rows \
        else []


def update_page(page: Path, table: str, command: str) -> None:
    """Replace the text between the coverage markers of ``page``."""
    text = page.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{page} has no {BEGIN} ... {END} markers to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{BEGIN}\n{command}\n\n{table}\n{END}{tail}")


# ----------------------------------------------------------------------------- main
def _parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=[],
                    help="torchvision model names, or timm/<name> for a timm model")
    ap.add_argument("--families", nargs="*", default=[], help="families (see CNN_FAMILIES)")
    ap.add_argument("--all", action="store_true", help="every model in TORCHVISION_CNNS")
    ap.add_argument("--size", type=int, default=224, help="input resolution")
    ap.add_argument("--val", type=int, default=16, help="validation images compared")
    ap.add_argument("--calib", type=int, default=32, help="calibration images")
    ap.add_argument("--batch", type=int, default=8, help="batch of the builds")
    ap.add_argument("--calibration", default="mse",
                    help="activation-range method of the INT8 build: minmax, percentile or mse "
                         "(aiq_tvm.calibrate.CALIBRATION_METHODS)")
    ap.add_argument("--weight-correction", default=DEFAULT_WEIGHT_CORRECTION,
                    choices=WEIGHT_CORRECTIONS,
                    help="what the INT8 build does to the weights before rounding "
                         "(aiq_tvm.weight_correction)")
    ap.add_argument("--ort", action="store_true", help="also ONNX Runtime INT8's cosine")
    ap.add_argument("--fp64", action="store_true",
                    help="also the FP32 relative errors of ours and of torch's own float32 "
                         "against torch in float64 (how far apart two float32 summation "
                         "orders can be)")
    ap.add_argument("--target", default="llvm",
                    help="build target (JSON dict, target string or preset name; default: "
                         "this host)")
    ap.add_argument("--timeout", type=int, default=840, help="seconds per model")
    ap.add_argument("--max-params", type=float, default=0.0,
                    help="skip (and record) models with more parameters, in millions")
    ap.add_argument("--not-run", default=None, metavar="REASON",
                    help="record the models as skipped with this reason, without running them")
    ap.add_argument("--lock", default=None,
                    help="flock this file while a model is checked (heavy jobs share the host)")
    ap.add_argument("--jsonl", default=None, help="append each model's record here")
    ap.add_argument("--render", nargs="*", default=None, metavar="JSONL",
                    help="only render saved records")
    ap.add_argument("--update", default=None, help="page whose coverage table to replace")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    os.environ.setdefault("TVM_NUM_THREADS", "2")
    # PyTorch's spinning OpenMP workers crawl on a shared host (see scripts/train.py); set
    # before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.one:
        print(json.dumps(check_one(args.one, args.size, args.val, args.calib, args.batch,
                                   args.ort, args.calibration, args.fp64,
                                   args.weight_correction, args.target)), flush=True)
        return 0
    if args.render is not None:
        records = {}
        for path in args.render:
            for line in Path(path).read_text().splitlines():
                rec = json.loads(line)
                key = (rec["model"], rec.get("size"))
                # The latest record wins, except that a later timeout or skip does not hide a
                # completed check (a re-run slowed down by other jobs).
                if rec["status"] in ("error", "skipped") and \
                        records.get(key, {}).get("status") in ("pass", "fail"):
                    continue
                records[key] = rec
        table = render(list(records.values()))
        print(table)
        if args.update:
            cmds = "\n".join(f"`{ln.strip()}`" for p in args.render
                             for ln in Path(p).with_suffix(".cmd").read_text().splitlines()
                             if ln.strip()) if all(Path(p).with_suffix(".cmd").exists()
                                                   for p in args.render) else ""
            update_page(Path(args.update), table, f"Commands:\n\n{cmds}" if cmds else "")
        return 0
    from aiq_tvm.models.torchvision_zoo import CNN_FAMILIES, TORCHVISION_CNNS

    unknown = [f for f in args.families if f not in CNN_FAMILIES]
    if unknown:
        raise SystemExit(f"unknown families {unknown}; valid: {', '.join(CNN_FAMILIES)}")
    names = list(TORCHVISION_CNNS) if args.all else list(args.models)
    names += [n for f in args.families for n in CNN_FAMILIES[f] if n not in names]
    if not names:
        raise SystemExit("nothing to check: give --models, --families or --all")
    if args.jsonl:
        cmd = "TVM_NUM_THREADS={} python scripts/check_torchvision.py {}".format(
            os.environ["TVM_NUM_THREADS"], shlex.join(argv if argv is not None else sys.argv[1:]))
        with open(Path(args.jsonl).with_suffix(".cmd"), "a") as fh:
            fh.write(cmd + "\n")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_models import _locked

    for name in names:
        params_m = declared_params_m(name)
        if args.not_run:
            rec = {"model": name, "size": args.size, "status": "skipped", "params_m": params_m,
                   "error": f"not run: {args.not_run}"}
        elif args.max_params and params_m is not None and params_m > args.max_params:
            rec = {"model": name, "size": args.size, "status": "skipped", "params_m": params_m,
                   "error": f"not run: {params_m:.0f} M parameters > --max-params "
                            f"{args.max_params:g} (time and memory of the shared host)"}
        else:
            with _locked(args.lock):  # per model: others may measure between two models
                rec = run_in_subprocess(name, args)
        summary = {k: rec.get(k) for k in ("status", "fp32_rel_err", "int8_min_cos",
                                           "int8_median_cos", "ort_int8_min_cos", "error")
                   if k in rec}
        print(f"[{name}] {summary}", flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
