"""The package layout keeps its promises: few top-level modules, benchmarks imported by nothing
in the library, no sys.path manipulation, no module reachable under two names."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = [ROOT / "latent_evo", ROOT / "zoo", ROOT / "pretrain", ROOT / "benchmarks"]


def _sources(*dirs: Path):
    for d in dirs:
        yield from sorted(d.rglob("*.py"))


def test_top_level_of_the_package_is_small():
    top = sorted(p.name for p in (ROOT / "latent_evo").glob("*.py"))
    assert len(top) <= 6, top


def test_no_sys_path_manipulation():
    for path in _sources(*PACKAGE_DIRS):
        assert "sys.path" not in path.read_text(), path


def test_benchmarks_are_imported_only_by_the_bench_command():
    allowed = {ROOT / "latent_evo" / "cli" / "bench.py"}
    for path in _sources(ROOT / "latent_evo", ROOT / "zoo", ROOT / "pretrain"):
        if path not in allowed:
            assert "latent_evo.benchmarks" not in path.read_text(), path


def test_zoo_and_pretrain_are_imported_under_one_name():
    # `zoo` and `pretrain` are folders of the repository, installed as latent_evo.zoo/.pretrain;
    # importing them by their folder name would load every module twice
    bad = re.compile(r"^\s*(from|import) (zoo|pretrain|benchmarks)\b", re.M)
    for path in _sources(*PACKAGE_DIRS, ROOT / "tests"):
        assert not bad.search(path.read_text()), path
