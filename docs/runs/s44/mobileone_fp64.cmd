TVM_NUM_THREADS=1 python scripts/check_torchvision.py --models timm/mobileone_s0 --size 128 --val 8 --calib 16 --fp64 --jsonl docs/runs/s44/mobileone_fp64.jsonl
