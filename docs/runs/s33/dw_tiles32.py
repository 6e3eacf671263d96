import sys

sys.argv = [sys.argv[0]] + sys.argv[1:]
import importlib.util

spec = importlib.util.spec_from_file_location("bdt", "/work/main/scripts/bench_dw_tiles.py")
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
m.SHAPES = [("dw 32 @16", 16, 32, 1, 3), ("dw/2 96 @16", 16, 96, 2, 3), ("dw 144 @8", 8, 144, 1, 3),
            ("dw/2 144 @8", 8, 144, 2, 3), ("dw 192 @4", 4, 192, 1, 3), ("dw 384 @2", 2, 384, 1, 3)]
m.main()
