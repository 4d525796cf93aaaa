#!/usr/bin/env bash
cd "$(git rev-parse --show-toplevel)"
export NOAMT_DATA_DIR=${MULTI30K:?the Multi30k folder}
O=${OUT:-$PWD}
B() { python scripts/benchmark_peers.py model=small "$@" --rounds 3 --block 5 --decode-sentences 0 --json; }
for rep in 1 2; do
  B device.num_threads=2 > $O/quiet_t2_$rep.json 2>>$O/err.log
  B device.num_threads=2 --contention 1 > $O/busy_t2_$rep.json 2>>$O/err.log
  OMP_WAIT_POLICY=PASSIVE B device.num_threads=2 --contention 1 > $O/busy_t2_passive_$rep.json 2>>$O/err.log
  B device.num_threads=1 --contention 1 > $O/busy_t1_$rep.json 2>>$O/err.log
  B device.num_threads=1 > $O/quiet_t1_$rep.json 2>>$O/err.log
done
