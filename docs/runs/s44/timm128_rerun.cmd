TVM_NUM_THREADS=2 python scripts/check_torchvision.py --models timm/edgenext_xx_small timm/skresnet18 --size 128 --val 8 --calib 16 --timeout 600 --jsonl docs/runs/s44/timm128_rerun.jsonl
TVM_NUM_THREADS=2 python scripts/check_torchvision.py --models timm/edgenext_xx_small --size 128 --val 8 --calib 16 --timeout 600 --jsonl docs/runs/s44/timm128_rerun.jsonl
TVM_NUM_THREADS=2 python scripts/check_torchvision.py --models timm/edgenext_xx_small --size 128 --val 8 --calib 16 --timeout 600 --jsonl docs/runs/s44/timm128_rerun.jsonl
TVM_NUM_THREADS=2 python scripts/check_torchvision.py --models timm/edgenext_xx_small --size 128 --val 8 --calib 16 --timeout 600 --jsonl docs/runs/s44/timm128_rerun.jsonl
