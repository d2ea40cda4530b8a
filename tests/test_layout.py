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


# ---------------------------------------------------------------- the house rules of issue 28
import ast  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

LIBRARY_DIRS = [ROOT / "latent_evo", ROOT / "zoo", ROOT / "pretrain"]
_INSTALLED_AS = {"zoo": "latent_evo.zoo", "pretrain": "latent_evo.pretrain"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] in _INSTALLED_AS:
        parts = _INSTALLED_AS[parts[0]].split(".") + parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """module -> the library modules it imports, at module level or inside a function (a lazy
    import is still an arrow). `from pkg import name` points at `pkg.name` when that is a module."""
    modules = {_module_name(p): p for p in _sources(*LIBRARY_DIRS)}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]  # fmt: skip
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def test_no_library_file_over_500_lines():
    long = [str(p.relative_to(ROOT)) for p in _sources(*LIBRARY_DIRS)
            if len(p.read_text().splitlines()) > 500]  # fmt: skip
    assert not long, long


def test_no_import_circles_between_modules():
    """Package `__init__` files re-export their modules (an arrow back from a module to its own
    package's `__init__` is not a circle of rooms); every other circle is."""
    graph = _import_graph()

    def edges(m: str) -> set[str]:
        return {t for t in graph[m] if not (t != m and m.startswith(t + "."))}

    cycles = []
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in edges(m):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    cycles = [c for c in cycles if not any(x.endswith("__init__") for x in c)]
    assert not cycles, cycles


def test_nothing_below_tasks_imports_tasks():
    below = ("latent_evo.genome", "latent_evo.models", "latent_evo.compressor",
             "latent_evo.strategies", "latent_evo.envs", "latent_evo.config")  # fmt: skip
    graph = _import_graph()
    bad = {m: sorted(t for t in ts if t.startswith("latent_evo.tasks"))
           for m, ts in graph.items() if m.startswith(below)}  # fmt: skip
    assert not {m: ts for m, ts in bad.items() if ts}


def test_evolution_rooms_are_named_in_the_package_map_and_use_protocols():
    """Every module of `evolution/` is listed (with what it holds) in the package docstring, and
    none asks an object what it is with `hasattr`: the optional parts of a task, compressor,
    strategy or space are protocols, classes or declared attributes."""
    init = (ROOT / "latent_evo" / "evolution" / "__init__.py").read_text()
    for path in sorted((ROOT / "latent_evo" / "evolution").glob("*.py")):
        if path.name != "__init__.py":
            assert f"\n{path.name} " in init, f"{path.name} is missing from evolution/__init__.py"
        assert "hasattr(" not in path.read_text(), path


def test_import_latent_evo_stays_light():
    code = ("import sys, latent_evo, latent_evo.tasks, latent_evo.evolution; "
            "print(sorted(m for m in ('lightning', 'gymnasium', 'datasets') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
