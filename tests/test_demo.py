"""`latent-evo demo` end to end on a tiny budget: every method runs and the outputs are written."""

import json

from latent_evo.cli import demo


def test_demo_writes_table_plot_and_json(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        demo.main(["--budget", "64", "--popsize", "16", "--sgd-steps", "20", "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    methods = (
        "default search: latent CMA-ES",
        "direct GA",
        "direct OpenAI-ES",
        "SGD (Adam",
        "best zoo",
    )
    for method in methods:
        assert method in printed
    results = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in results["table"]} >= {"direct GA", "direct OpenAI-ES"}
    for name, run in results["methods"].items():
        assert run["evaluations"] >= 64, name
        assert 0.0 <= run["test"]["test_accuracy"] <= 1.0
    assert 0.5 < results["best_zoo_network"]["test_accuracy"] <= 1.0  # the bundled reference
    assert (out / "accuracy.png").stat().st_size > 10_000


def test_demo_names_missing_compressor(tmp_path, capsys):
    assert (
        demo.main(
            ["--budget", "32", "--compressor", str(tmp_path / "nope"), "--out", str(tmp_path)]
        )
        == 2
    )
    assert "nope" in capsys.readouterr().err
