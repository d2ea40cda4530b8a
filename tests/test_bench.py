"""Smoke tests of `latent-evo bench speed|search` with tiny budgets (the real runs are in
benchmarks/results/)."""

import json

import torch
from zoo_helpers import write_zoo

from latent_evo.benchmarks import cli as bench
from latent_evo.compressor.attention import Compressor
from latent_evo.compressor.tokenizer import Tokenizer
from latent_evo.tasks import get_task


def _tiny_compressor_dir(tmp_path):
    """An untrained compressor for `mnist1d-mlp-tiny`, saved under tmp_path/comp."""
    comp_dir = tmp_path / "comp"
    task = get_task("mnist1d-mlp-tiny")
    Compressor.from_tokenizer(Tokenizer(task.spec, 64)).save_pretrained(comp_dir)
    return comp_dir


def test_bench_speed_smoke(tmp_path):
    argv = ["speed", "--tasks", "mnist1d-mlp-tiny", "--pops", "8", "--repeats", "1",
            "--max-decode-params", "20000", "--out", str(tmp_path)]  # fmt: skip
    assert bench.main(argv) == 0
    res = json.loads((tmp_path / "speed.json").read_text())
    (row,) = res["throughput"]
    assert row["P"] == 8 and min(row["latent_gps"], row["direct_gps"], row["loop_gps"]) > 0
    assert [r["params"] for r in res["decode"]] == [10210]  # only the ~10k spec, under the cap
    md = (tmp_path / "speed.md").read_text()
    assert "commit" in md and "mnist1d-mlp-tiny" in md


def test_bench_search_smoke(tmp_path):
    torch.manual_seed(0)
    comp_dir = _tiny_compressor_dir(tmp_path)
    argv = ["search", "--task", "mnist1d-mlp-tiny", "--settings", "family", "--seeds", "0,1",
            "--budget", "96", "--methods", "latent-cma,direct-ga,direct-cma,sgd,prior-best-of-n",
            "--sgd-steps", "5", "--compressor", str(comp_dir), "--out", str(tmp_path)]  # fmt: skip
    assert bench.main(argv) == 0
    res = json.loads((tmp_path / "search.json").read_text())
    runs = res["settings"]["family"]["runs"]
    assert len(runs["latent-cma"]) == 2 and runs["latent-cma"][0]["evaluations"] >= 96
    assert all(r["history"] and r["history"][-1]["evaluations"] <= 128 for r in runs["direct-ga"])
    assert runs["prior-best-of-n"][0]["evaluations"] == 96
    assert 0.0 <= runs["sgd"][1]["test"]["test_accuracy"] <= 1.0
    assert (tmp_path / "search_family.png").stat().st_size > 0
    assert "| latent CMA-ES |" in (tmp_path / "search.md").read_text()
    rerender = ["search", "--from-json", str(tmp_path / "search.json"), "--thresholds", "0.1",
                "--out", str(tmp_path / "r")]  # fmt: skip
    assert bench.main(rerender) == 0
    assert "evals to 0.100" in (tmp_path / "r" / "search.md").read_text()
    # runs split over processes merge into one report (here: the same file twice)
    both = f"{tmp_path / 'search.json'},{tmp_path / 'search.json'}"
    assert bench.main(["search", "--from-json", both, "--out", str(tmp_path / "m")]) == 0
    merged = (tmp_path / "m" / "search.md").read_text()
    assert "- merged: `latent-evo bench search" in merged
    assert "| latent CMA-ES |" in merged and "(4) |" in merged  # 2 seeds twice
    assert bench.main(["search", "--methods", "nope", "--out", str(tmp_path)]) == 2


def test_bench_search_zoo_warm_start_counts_the_zoo(tmp_path):
    """`latent-cma-zoo-switch` starts at the encoding of the zoo's best checkpoint: every zoo
    checkpoint's evaluation counts against the budget."""
    torch.manual_seed(0)
    task = get_task("mnist1d-mlp-tiny")
    comp_dir = _tiny_compressor_dir(tmp_path)
    zoo = task.init_genomes(5, torch.Generator().manual_seed(1))
    write_zoo(tmp_path / "zoo", "mnist1d-mlp-tiny", task.spec, zoo)
    argv = ["search", "--task", "mnist1d-mlp-tiny", "--settings", "wide", "--seeds", "0",
            "--budget", "69", "--methods", "latent-cma-zoo-switch", "--compressor", str(comp_dir),
            "--zoo", str(tmp_path / "zoo"), "--out", str(tmp_path)]  # fmt: skip
    assert bench.main(argv) == 0
    (run,) = json.loads((tmp_path / "search.json").read_text())["settings"]["wide"]["runs"][
        "latent-cma-zoo-switch"
    ]
    assert run["options"]["init"] == {"kind": "zoo", "top_k": 1, "path": str(tmp_path / "zoo")}
    assert run["evaluations"] == 5 + 2 * 32  # the zoo, then two generations of 32


def test_bench_search_switch_to_the_output_layer(tmp_path):
    """`latent-cma-switch-head` resolves its tensors to the task's output layer and, once the
    latent search stalls, searches only those weights."""
    from latent_evo.benchmarks import search as bench_search

    torch.manual_seed(0)
    comp_dir = _tiny_compressor_dir(tmp_path)
    assert bench_search.output_layer(get_task("mnist1d-mlp-wide").spec) == ["layers.2.*"]
    argv = ["search", "--task", "mnist1d-mlp-tiny", "--settings", "transfer", "--seeds", "0",
            "--budget", "1600", "--methods", "latent-cma-switch-head", "--compressor",
            str(comp_dir), "--out", str(tmp_path)]  # fmt: skip
    assert bench.main(argv) == 0
    (run,) = json.loads((tmp_path / "search.json").read_text())["settings"]["transfer"]["runs"][
        "latent-cma-switch-head"
    ]
    assert run["options"]["switch"]["tensors"] == ["layers.1.*"]
    assert [e["to"] for e in run["events"] if e["event"] == "switch"] == ["direct"]


def test_bench_search_stops_on_a_signal_and_keeps_finished_runs(tmp_path, monkeypatch):
    """SIGINT/SIGTERM end a run early (`evolve` returns `interrupted`); the benchmark must then
    stop instead of going on to the next run, keeping the JSON of the runs that finished."""
    import pytest

    from latent_evo.evolution import loop as evolution

    torch.manual_seed(0)
    comp_dir = _tiny_compressor_dir(tmp_path)
    step, calls = evolution.LatentEvolution.step, []

    def step_then_signal(self):
        rec = step(self)
        calls.append(1)
        if len(calls) == 5:  # the second run's second generation
            self.request_stop()
        return rec

    monkeypatch.setattr(evolution.LatentEvolution, "step", step_then_signal)
    argv = ["search", "--task", "mnist1d-mlp-tiny", "--settings", "family", "--seeds", "0,1",
            "--budget", "96", "--methods", "direct-ga", "--compressor", str(comp_dir),
            "--out", str(tmp_path)]  # fmt: skip
    with pytest.raises(KeyboardInterrupt, match="direct-ga, seed 1"):
        bench.main(argv)
    (done,) = json.loads((tmp_path / "search.json").read_text())["settings"]["family"]["runs"][
        "direct-ga"
    ]
    assert done["evaluations"] >= 96


def _external_argv(tmp_path, methods: str) -> list[str]:
    comp_dir = _tiny_compressor_dir(tmp_path)
    return ["search", "--task", "mnist1d-mlp-tiny", "--settings", "family", "--seeds", "0",
            "--budget", "96", "--methods", methods, "--compressor", str(comp_dir),
            "--out", str(tmp_path)]  # fmt: skip


def test_external_optimizers_are_skipped_without_their_library(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "evotorch", None)  # import evotorch -> ImportError
    monkeypatch.setitem(sys.modules, "pygad", None)
    assert bench.main(_external_argv(tmp_path, "evotorch-snes,pygad-ga")) == 0
    runs = json.loads((tmp_path / "search.json").read_text())["settings"]["family"]["runs"]
    assert "pygad is not installed" in runs["pygad-ga"][0]["skipped"]
    assert (
        "| EvoTorch SNES | skipped: evotorch is not installed"
        in (tmp_path / "search.md").read_text()
    )


def test_external_optimizers_spend_the_same_counted_budget(tmp_path):
    import pytest

    pytest.importorskip("evotorch")
    pytest.importorskip("pygad")
    torch.manual_seed(0)
    assert bench.main(_external_argv(tmp_path, "evotorch-snes,evotorch-cmaes,pygad-ga")) == 0
    runs = json.loads((tmp_path / "search.json").read_text())["settings"]["family"]["runs"]
    for name in ("evotorch-snes", "evotorch-cmaes", "pygad-ga"):
        (r,) = runs[name]
        assert 96 <= r["evaluations"] < 96 + 32 and r["history"], name
        assert 0.0 <= r["test"]["test_accuracy"] <= 1.0
