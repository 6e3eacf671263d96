# Session 32: conv kernel hashes of the torchvision models and our 32 x 32 models on four x86
# levels into $1 (run once with the session start's targets/x86/conv2d.py and winograd.py
# checked out, once with HEAD; compare with scripts/kernel_hashes.py --compare). Output:
# kernel_hashes_all.txt
set -e
out=$1
for t in '{"kind":"llvm","mcpu":"haswell"}' '{"kind":"llvm","mcpu":"alderlake"}' '{"kind":"llvm","mcpu":"skylake-avx512"}' llvm; do
  n=$(echo "$t" | tr -dc 'a-z0-9')
  TVM_NUM_THREADS=2 python scripts/kernel_hashes.py --target "$t" --json $out/tv_$n.json > /dev/null 2>&1 || echo "tv $t failed"
  TVM_NUM_THREADS=2 python scripts/kernel_hashes.py --ours --target "$t" --json $out/ours_$n.json > /dev/null 2>&1 || echo "ours $t failed"
done
