"""`latent-evo bench search` as a script; all logic is in `latent_evo/bench.py` (see its docstring).

Full run (every method, both settings, 20,000 true evaluations, 3 seeds):
    .venv/bin/python benchmarks/search.py --seeds 0,1,2 --budget 20000
Reduced run behind benchmarks/results/search.md (shared 2-core CPU, one torch thread):
    nice -n 19 .venv/bin/python benchmarks/search.py --quick --seeds 0,1,2
(--quick = budget 3,000 and, on the transfer task, latent CMA-ES + switch, direct OpenAI-ES,
SGD and the best zoo checkpoint.) Options: --seeds, --budget, --methods a,b (or all),
--settings family,transfer, --transfer-methods, --compressor, --zoo, --sgd-steps, --out DIR.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from latent_evo.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["search", *sys.argv[1:]]))
