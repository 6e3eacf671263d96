"""bench_dw_tiles.run_shape on given depthwise shapes (every tile, the window rule lifted for
the candidates): dw_tiles_seed18.py TARGET SCHEME BATCH H W C K[/S] [K[/S]...] [--also TILE...]"""
import argparse
import sys

sys.path.insert(0, "/work/main/scripts")
import numpy as np  # noqa: E402
import bench_dw_tiles as bdt  # noqa: E402
from aiq_tvm.targets import resolve_target  # noqa: E402
from aiq_tvm.targets.x86 import ConvSpec  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("target")
ap.add_argument("scheme")
ap.add_argument("dims", nargs=4, type=int)
ap.add_argument("ks", nargs="+", help="K or K/stride")
ap.add_argument("--also", nargs="*", default=[])
ap.add_argument("--top", type=int, default=6)
a = ap.parse_args()
a.rounds, a.round_ms, a.clock = 7, 40.0, "cpu"
n, h, w, c = a.dims
target = resolve_target(a.target)[0]
rng = np.random.default_rng(0)
for ks in a.ks:
    k, _, s = ks.partition("/")
    k, s = int(k), int(s or 1)
    a.label = f"dw{ks} {c}@{h}x{w}"
    bdt.run_shape(ConvSpec(n, h, w, c, c, k, k, stride=s, padding=k // 2, groups=c), a, target,
                  rng)
