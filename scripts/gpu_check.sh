#!/usr/bin/env bash
# One prepared check of a CUDA machine, in under 8 minutes, every result written to OUT_DIR:
#
#   bash scripts/gpu_check.sh OUT_DIR               # on the GPU (bf16)
#   bash scripts/gpu_check.sh OUT_DIR --cpu-smoke   # the same script, tiny sizes, on the CPU
#
# Steps, each with its own timeout (cut to what is left of the budget, GPU_CHECK_BUDGET seconds,
# default 450), so that one failure or hang loses only itself:
#   env                 torch, CUDA and the GPU
#   gpu_tests           pytest -m gpu: tests/test_host_syncs.py (when present), test_decoding.py, ...
#   throughput_*        scripts/benchmark_throughput.py: tiny at 8,192 and base at 32,768 tokens per
#                       update, eager, device.compile and device.cuda_graphs (the compiled ones on
#                       length buckets): median ms per update, tokens/s, MFU against the bf16 matmul
#                       peak measured in the same process, peak memory
#   beam                beam 5 over the validation sources with the tiny model: sentences/s
#   peers               scripts/benchmark_peers.py device=cuda: noamt against HF Marian, alternating
#                       rounds (needs transformers)
# Each step writes OUT_DIR/<step>.out (stdout; its last line is the step's JSON) and <step>.log
# (stderr); summary.json gathers every step's status, seconds and result.
#
# Data: $NOAMT_DATA_DIR (Multi30k) when it is a folder, else the synthetic corpus of
# tests/helpers/toy_corpus.py, written to OUT_DIR/toy_corpus. On a bare machine whose Python lacks
# noamt's dependencies, the wheels of shared/tools/gpu-wheels.sh in .whl/ are installed first;
# gpu_tests needs pytest and peers transformers, which that script fetches only when named
# (gpu-wheels.sh pytest pluggy iniconfig transformers ...): without them those steps fail alone.
# $PYTHON picks the interpreter (default python3).
set -uo pipefail

OUT=${1:?usage: scripts/gpu_check.sh OUT_DIR [--cpu-smoke]}
SMOKE=0
[[ ${2:-} == --cpu-smoke ]] && SMOKE=1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-450}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$ROOT" || exit 1
: >"$OUT/steps.tsv"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" -c "import hydra, datasets, sacremoses" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl >"$OUT/install.log" 2>&1
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

step() { # step NAME TIMEOUT COMMAND...: run COMMAND within TIMEOUT (or the budget's rest) and record it
    local name=$1 limit=$2 left start
    shift 2
    left=$((BUDGET - SECONDS))
    ((limit > left)) && limit=$left
    if ((limit < 10)); then
        printf '%s\tskipped\t0\t0\n' "$name" >>"$OUT/steps.tsv"
        return
    fi
    start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.out" 2>"$OUT/$name.log"
    printf '%s\t%s\t%s\t%s\n' "$name" "$?" "$((SECONDS - start))" "$limit" >>"$OUT/steps.tsv"
}

if [[ -d ${NOAMT_DATA_DIR:-} ]]; then
    DATA=$NOAMT_DATA_DIR
else
    DATA=$OUT/toy_corpus
    "$PY" -c "import sys; sys.path.insert(0, 'tests'); from helpers.toy_corpus import write_toy_corpus as w; w(__import__('pathlib').Path(sys.argv[1]))" "$DATA"
fi
# Every pair fits the largest bucket: lengths are cut at 63 tokens (64 with EOS or BOS).
BUCKETS=16,24,32,48,64
COMMON=("data.dir=$DATA" "tokenizer.cache_dir=$OUT/tokenizers" data.max_src_len=63 data.max_tgt_len=63)
if ((SMOKE)); then
    COMMON+=(data.max_train_examples=60 data.max_eval_examples=10 tokenizer.vocab_size=600
        model.encoder_layers=1 model.decoder_layers=1 device=cpu device.num_threads=1)
    TIMED=(--updates 3 --warmup 1)
    TINY_TOKENS=512
    PEERS=(--rounds 1 --block 2 --decode-sentences 10 --decode-length 3 --beam 2)
else
    COMMON+=(device=cuda device.precision=bf16)
    TIMED=()
    TINY_TOKENS=8192
    PEERS=(--rounds 3 --block 20 --decode-sentences 200)
fi

throughput() { # throughput NAME TIMEOUT MODEL TOKENS_PER_UPDATE [OVERRIDES AND OPTIONS...]
    local name=$1 limit=$2 model=$3 tokens=$4
    shift 4
    step "throughput_$name" "$limit" "$PY" scripts/benchmark_throughput.py "${COMMON[@]}" "model=$model" \
        "trainer.max_tokens=$tokens" "${TIMED[@]}" --json "$@"
}

step env 30 "$PY" -c "
import json, torch
cuda = torch.cuda.is_available()
print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda if cuda else None,
                  'gpu': torch.cuda.get_device_name() if cuda else None,
                  'gpu_memory_gib': round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None}))"

TESTS=()
for file in tests/test_host_syncs.py tests/test_decoding.py tests/test_device.py tests/test_data_batching.py; do
    [[ -f $file ]] && TESTS+=("$file")
done
step gpu_tests 150 "$PY" -m pytest -q -m gpu -p no:cacheprovider -o addopts=-rs "${TESTS[@]}"  # one process: xdist may be absent there

throughput tiny_eager 90 tiny "$TINY_TOKENS"
if ((SMOKE)); then
    throughput tiny_buckets 60 tiny "$TINY_TOKENS" --pad-to-buckets "$BUCKETS"
else
    throughput base_eager 90 base 32768
fi

step beam 90 "$PY" - "${COMMON[@]}" model=tiny <<'EOF'
"""Beam 5 over the validation sources, in batches of 4,096 source tokens, with a freshly
initialised model (its outputs run to their length limits): sentences/s of the second pass."""
import json, sys, time

import torch
from hydra import compose, initialize_config_module

from noamt import pipeline
from noamt.cli.config import register_configs, to_train_config
from noamt.data import TokenBudgetBatches
from noamt.decoding import DecodingConfig, beam_search
from noamt.device import DeviceManager

register_configs()
with initialize_config_module(config_module="noamt.configs", version_base=None):
    cfg = to_train_config(compose(config_name="train", overrides=sys.argv[1:]))
dm = DeviceManager(cfg.device)
dm.seed(1)
data = pipeline.prepare_data(cfg.data, cfg.tokenizer, cfg.trainer, dm)
tok = data.tokenizer
model = pipeline.build_model(cfg.model, tok).to(dm.device)
split = data.valid.split
batches = [b.src.to(dm.device) for b in TokenBudgetBatches(split, 4096, tok.pad_id, tok.bos_id, tok.eos_id, shuffle=False)]
sync = torch.cuda.synchronize if dm.device.type == "cuda" else (lambda: None)
for timed in (False, True):  # the first pass warms up
    sync()
    start = time.perf_counter()
    with dm.autocast():
        outputs = [o for src in batches for o in beam_search(model, src, DecodingConfig(beam_size=5), bos_id=tok.bos_id, eos_id=tok.eos_id)]
    sync()
    seconds = time.perf_counter() - start
tokens = sum(len(o) + 1 for o in outputs)
print(json.dumps({"device": dm.describe(), "sentences": len(split), "batches": len(batches), "beam_size": 5,
                  "seconds": round(seconds, 3), "sentences_per_s": round(len(split) / seconds, 1),
                  "output_tokens_per_s": round(tokens / seconds, 1)}))
EOF

if ((!SMOKE)); then
    throughput tiny_cuda_graphs 150 tiny 8192 device.cuda_graphs=true --pad-to-buckets "$BUCKETS"
    throughput tiny_compile 150 tiny 8192 device.compile=true --pad-to-buckets "$BUCKETS"
fi
step peers 120 "$PY" scripts/benchmark_peers.py "${COMMON[@]}" model=tiny "trainer.max_tokens=$TINY_TOKENS" \
    "${PEERS[@]}" --json
if ((!SMOKE)); then
    throughput base_cuda_graphs 180 base 32768 device.cuda_graphs=true --pad-to-buckets "$BUCKETS"
    throughput base_compile 180 base 32768 device.compile=true --pad-to-buckets "$BUCKETS"
fi

"$PY" - "$OUT" "$SMOKE" "$SECONDS" <<'EOF'
"""summary.json: per step its status (ok, failed, timed out, skipped), exit code, seconds and
result (the JSON of its last output line; for pytest, its last line)."""
import json, sys
from pathlib import Path

out, smoke, seconds = Path(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
steps = {}
for line in (out / "steps.tsv").read_text().splitlines():
    name, rc, took, limit = line.split("\t")
    status = "skipped" if rc == "skipped" else "ok" if rc == "0" else "timed out" if rc in ("124", "137") else "failed"
    lines = (out / f"{name}.out").read_text(errors="replace").splitlines() if status != "skipped" else []
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = lines[-1]
    steps[name] = {"status": status, "exit_code": None if rc == "skipped" else int(rc), "seconds": int(took),
                   "timeout_s": int(limit), "result": result, "log": f"{name}.log"}
summary = {"mode": "cpu-smoke" if smoke else "gpu", "seconds": seconds,
           "failed": [name for name, s in steps.items() if s["status"] != "ok"], "steps": steps}
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
print(f"{len(steps) - len(summary['failed'])}/{len(steps)} steps ok in {seconds} s; failed: {summary['failed'] or 'none'}")
EOF
