#!/usr/bin/env bash
# The GPU benchmarks in one command (< 5 minutes on an H100/H200), for a session that is lent a
# GPU: results land in benchmarks/results/*_cuda*.{md,json}; copy the numbers into BENCHMARKS.md.
#   bash benchmarks/gpu.sh            (after `make install`; needs CUDA)
# 1. GPT-2-124M, P = 1,024 members with rank-8 deltas on its 48 block matrices, 1 sequence of
#    128 tokens each, 64 members per forward, bf16: population vs plain batched inference
#    (latent_evo.models.lowrank; no member's weights are built).
# 2. Population fitness throughput, latent (decode + evaluate) vs direct vmapped vs a per-module
#    loop, at P = 256 / 1,024, for the MLP, CNN and GPT-2 tasks (latent-evo bench speed).
# 3. Decode throughput of one latent into GPT-2-124M with the default attention compressor.
# 4. The low-rank decoding mode at 124M: one code -> rank-8 factors of all 48 block matrices,
#    materialising a member, and the search state for P = 1,024.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$PY" -m latent_evo.benchmarks.lowrank_gpt2 --device cuda --preset 124m --pop 1024 --seqs 1 \
    --tokens 128 --chunk 64 --repeats 3 --dtype bfloat16 --out benchmarks/results
"$PY" -m latent_evo.benchmarks.lowrank_gpt2 --device cuda --preset 124m --pop 16 --seqs 4 \
    --tokens 128 --repeats 5 --out benchmarks/results
.venv/bin/latent-evo bench speed --device cuda --pops 256,1024 --parts throughput,decode \
    --tasks mnist1d-mlp,mnist1d-mlp-wide,mnist1d-cnn,text-gpt2-tiny --repeats 5 \
    --out benchmarks/results --suffix _cuda
"$PY" -m latent_evo.benchmarks.lowrank_decode --device cuda --repeats 10 --out benchmarks/results
echo "done: benchmarks/results/lowrank_gpt2_124m_cuda*.md, benchmarks/results/speed_cuda.md"
