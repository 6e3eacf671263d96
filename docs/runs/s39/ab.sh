export TVM_NUM_THREADS=1
cd /tmp  # the base checkout's interpreter must not import /work/main from the cwd
for r in 1 2; do
for who in base new; do
  py=/work/main/.venv/bin/python; [ $who = base ] && py=/tmp/basevenv/bin/python
  for t in haswell skylake-avx512; do
    $py /work/main/scripts/speed_fuzz.py --target "{\"kind\":\"llvm\",\"mcpu\":\"$t\"}" --seeds 9 11 17 18 --rounds 7 --journal /work/runs/s39/ab_${who}_${t}_r$r.jsonl > /dev/null 2>&1
    $py /work/main/docs/runs/s39/lenet.py "{\"kind\":\"llvm\",\"mcpu\":\"$t\"}" 16 2>/dev/null | tail -1 >> /work/runs/s39/ab_lenet.jsonl
  done
done
done
