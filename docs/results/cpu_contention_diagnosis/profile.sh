#!/usr/bin/env bash
cd "$(git rev-parse --show-toplevel)"
export NOAMT_DATA_DIR=${MULTI30K:?the Multi30k folder}
O=${OUT:-$PWD}
T() { python scripts/benchmark_throughput.py model=small "$@" --updates 10 --warmup 3 --profile --json; }
T device.num_threads=2 > $O/prof_quiet_t2.json 2> $O/prof_quiet_t2.txt
T device.num_threads=2 --contention 1 > $O/prof_busy_t2.json 2> $O/prof_busy_t2.txt
