#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, Triton and this repo's dependencies: the cuda engine's
# tests, its benchmark against the chunked engine, and whole training runs through the CLI.
#   [BENCH_ARGS="--settle 300"] bash benchmarks/gpu_check.sh OUTDIR [STAGE...]   stages: tests bench runs long (default: tests bench runs)
# (logs and bench.json land in OUTDIR)
set -u
out=${1:-gpu-check}
shift || true
stages=" ${*:-tests bench runs} "
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1
python3 -c "import torch, triton, numpy, numba; print('torch', torch.__version__, 'triton', triton.__version__, 'numpy', numpy.__version__, 'numba', numba.__version__, torch.cuda.get_device_name())" 2>&1 | tee "$out/env.log"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv 2>&1 | tee -a "$out/env.log"
if [[ $stages == *" tests "* ]]; then
  echo "== tests"
  timeout 150 python3 -m pytest tests/test_cuda_engine.py -q -p no:cacheprovider --durations=5 \
    2>&1 | tee "$out/tests.log" | tail -25
fi
if [[ $stages == *" tests "* ]]; then
  echo "== the self-check's cost, first call (compiles) and cached"
  python3 -c "import time, torch
from supermem.toy.engines import cuda
for m in (1, 2, 3, 2):
    t = time.perf_counter(); e = cuda.self_check('cuda', m); torch.cuda.synchronize()
    print(f'self_check m={m}: error {e:.1e}, {time.perf_counter() - t:.3f} s', flush=True)" 2>&1 | tee "$out/selfcheck.log"
fi
if [[ $stages == *" bench "* ]]; then
  echo "== benchmark"
  timeout 240 python3 benchmarks/bench_cuda.py --out "$out/bench.json" ${BENCH_ARGS:-} 2>&1 | tee "$out/bench.log"
fi
TIMEFORMAT="wall_s=%R"
# the kernels' block sizes the benchmark found fastest, where it ran (else the defaults)
train='import json, os, sys
from supermem.toy.engines import cuda
f = os.path.join(sys.argv[1], "bench.json")
if os.path.exists(f):
    t = json.load(open(f))["tune"]
    cuda.BLOCKS.update(rows=tuple(t["rows_best"]), cols=tuple(t["cols_best"]))
print("blocks", cuda.BLOCKS, flush=True)
from supermem.cli import main
sys.exit(main(["train"] + sys.argv[2:]))'
if [[ $stages == *" runs "* ]]; then
  echo "== whole runs through the CLI"
  for spec in "1000000 100" "100000 1000"; do  # short: the whole run's overheads beside the steps
    set -- $spec
    echo "T=$1 steps=$2" | tee -a "$out/runs.log"
    { time timeout 100 python3 -c "$train" "$out" --device cuda --engine cuda --train-size "$1" \
        --steps "$2" --test-size 10000 --snapshots 0 --no-progress --out "/tmp/run-$1-$2" \
        2>&1 | tail -5 ; } 2>&1 | tee -a "$out/runs.log"
    python3 -c "import json; r=json.load(open('/tmp/run-$1-$2/metrics.json')); print({k: r[k] for k in ('status', 'train_loss', 'test_loss', 'seconds', 'engine', 'diverged_step')})" 2>&1 | tee -a "$out/runs.log"
  done
fi
if [[ $stages == *" long "* ]]; then
  echo "== one longer run on engine auto (the tuned tiles where bench.json has them): T = 10^6, 5,000 steps"
  { time timeout 200 python3 -c "$train" "$out" --device cuda --engine auto --train-size 1000000 \
      --steps 5000 --test-size 10000 --snapshots 0 --no-progress --out /tmp/run-long \
      2>&1 | tail -5 ; } 2>&1 | tee -a "$out/runs.log"
  python3 -c "import json; r=json.load(open('/tmp/run-long/metrics.json')); print({k: r[k] for k in ('status', 'train_loss', 'test_loss', 'seconds', 'engine', 'diverged_step')})" 2>&1 | tee -a "$out/runs.log"
fi
