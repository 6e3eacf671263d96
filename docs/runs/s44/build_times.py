"""Build times of one model's FP32 and int8 builds, and their outputs, for comparing checkouts.

Session 44: ``FoldHostConstants`` (constant arithmetic of batch norms no conv absorbs) and the
prefetch loop. Run each checkout in its own process (imports from PYTHONPATH; a worktree needs
``aiq_tvm/passes`` and ``aiq_tvm/targets`` symlinked to its top-level folders) and compare:

    cd /tmp && PYTHONPATH=/work/wt/8cf542c TVM_NUM_THREADS=1 python \
        /work/main/docs/runs/s44/build_times.py timm/repghostnet_050 128 /tmp/old
    cd /tmp && PYTHONPATH=/work/main TVM_NUM_THREADS=1 python \
        /work/main/docs/runs/s44/build_times.py timm/repghostnet_050 128 /tmp/new
    python /work/main/docs/runs/s44/build_times.py --compare /tmp/old /tmp/new

Models: ``tv/<torchvision name>`` or ``timm/<timm name>`` (timm constructed here, as
``torchvision_zoo.timm_model`` does, since older checkouts lack it). Batch 8, 16 calibration
images; the outputs of 8 validation images are saved next to the timings.
"""

import json
import sys
import time

import numpy as np


def model_of(name: str, size: int):
    import torch

    from aiq_tvm.models import torchvision_zoo as zoo

    if name.startswith("tv/"):
        return zoo.torchvision_model(name[3:], size=size)
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name.removeprefix("timm/"), pretrained=False, num_classes=1000)
    zoo.set_bn_statistics(model, zoo.calibration_images(32, size, seed=1))
    return model.eval()


def measure(name: str, size: int, out: str) -> None:
    import torch

    import aiq_tvm
    from aiq_tvm.models import torchvision_zoo as zoo

    model = model_of(name, size)
    calib = zoo.calibration_images(16, size)
    x, _ = zoo.validation_images(8, size)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    rec = {"model": name, "size": size, "aiq_tvm": aiq_tvm.__file__}
    for plan in ("fp32", "int8"):
        t0 = time.perf_counter()
        res = aiq_tvm.build(mod, "llvm", params=params, plan=plan, calib_data=calib,
                            batch_size=8)
        rec[f"{plan}_build_s"] = round(time.perf_counter() - t0, 2)
        np.save(f"{out}_{plan}.npy", res.run(x, 8))
    with open(f"{out}.json", "w") as fh:
        json.dump(rec, fh)
    print(json.dumps(rec))


def compare(old: str, new: str) -> None:
    a, b = (json.load(open(f"{p}.json")) for p in (old, new))
    for plan in ("fp32", "int8"):
        same = np.array_equal(np.load(f"{old}_{plan}.npy"), np.load(f"{new}_{plan}.npy"))
        print(f"{a['model']} {a['size']} {plan}: build {a[f'{plan}_build_s']} -> "
              f"{b[f'{plan}_build_s']} s, outputs {'bit-identical' if same else 'DIFFER'}")


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        measure(sys.argv[1], int(sys.argv[2]), sys.argv[3])
