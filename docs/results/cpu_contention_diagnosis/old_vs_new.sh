#!/usr/bin/env bash
export NOAMT_DATA_DIR=${MULTI30K:?the Multi30k folder}
O=${OUT:-$PWD}
for rep in 1 2; do
  (cd ${OLD:?a worktree of commit 2cf9c4a} && PYTHONPATH=src python scripts/benchmark_peers.py model=small device.num_threads=2 --rounds 3 --block 5 --decode-sentences 0 --json > $O/old_quiet_$rep.json 2>>$O/err_old.log)
  (cd "$(git rev-parse --show-toplevel)" && python scripts/benchmark_peers.py model=small device.num_threads=2 --rounds 3 --block 5 --decode-sentences 0 --json > $O/new_quiet_$rep.json 2>>$O/err.log)
done
