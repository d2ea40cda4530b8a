"""`latent-evo bench speed` as a script; all logic is in `latent_evo/bench.py` (see its docstring).

Full run (GPU when CUDA exists, else CPU):
    .venv/bin/python benchmarks/speed.py
Reduced run behind benchmarks/results/speed.md (shared 2-core CPU, one torch thread):
    nice -n 19 .venv/bin/python benchmarks/speed.py --quick --repeats 3
Options: --quick, --repeats N, --tasks a,b, --pops 64,256,1024, --parts throughput,decode,
--device auto|cpu|cuda, --threads N, --out DIR.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from latent_evo.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["speed", *sys.argv[1:]]))
