TVM_NUM_THREADS=2 python scripts/check_torchvision.py --models timm/levit_128s --size 224 --val 8 --calib 16 --timeout 600 --jsonl docs/runs/s44/timm224_levit.jsonl
