TVM_NUM_THREADS=2 python scripts/check_torchvision.py --models timm/skresnet18 --size 128 --val 8 --calib 16 --jsonl docs/runs/s44/skres_again.jsonl
