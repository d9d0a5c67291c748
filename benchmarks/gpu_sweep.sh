#!/usr/bin/env bash
# The GPU node's benchmark run: G1 throughput and precision (each matmul precision against float64), the
# all-couplings sweep of an n = 256 network, and device scaling over every GPU of the node. JSON goes to
# benchmarks/results/; record the card, the figures and the device count in benchmarks/RESULTS.md.
#
#   bash benchmarks/gpu_sweep.sh            # from the repository root, with the project's .venv (make venv)
#   PY=python bash benchmarks/gpu_sweep.sh  # another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=benchmarks/results
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu_card.txt"
"$PY" -c "import jax; print(jax.devices())"
# G1: n = 128, K = 8,128 single couplings, B = 64, T = 100: engine vs PyTorch bmm, float32 "highest"
"$PY" benchmarks/sweep_throughput.py --case G1 --methods engine,vmap,torch_bmm --out "$OUT/sweep_G1.json"
# the fast matmul modes against float64 (error bound per metric), on G1 and on a zoo network
"$PY" benchmarks/sweep_throughput.py --precision-check --case G1 --zoo flipflop/0 --out "$OUT/sweep_precision_G1.json"
# all single couplings of an n = 256 network (memory and wall time)
"$PY" benchmarks/sweep_throughput.py --memory --n 256 --B 64 --T 100 --out "$OUT/sweep_memory_gpu.json"
# variants/s against GPU count (every GPU of the node)
NGPU=$("$PY" -c "import jax; print(len(jax.devices('gpu')))")
"$PY" benchmarks/scaling.py --parts devices --platform gpu --devices "$(seq -s, 1 "$NGPU")" --out "$OUT/scaling_gpu.json"
