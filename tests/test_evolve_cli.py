"""`latent-evo evolve`: config handling, run-directory outputs, SIGKILL / SIGTERM recovery,
`--compressor`, and sharded evaluation under torchrun (2 gloo ranks)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from latent_evo.cli.evolve import main

CONFIG = {
    "task": {"name": "mnist1d-mlp-tiny"},
    "mode": "direct",
    "strategy": {"name": "ga", "popsize": 8, "hparams": {"mutation_sigma": 0.02}},
    "generations": 4,
    "seed": 0,
    "eval_every": 2,
    "checkpoint_every": 2,
}


def _write(tmp_path: Path, cfg: dict, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def _rows(run_dir: Path) -> list[dict]:
    path = run_dir / "history.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def _latest_gen(run_dir: Path) -> int:
    pointer = run_dir / "checkpoints" / "latest"
    return int(pointer.read_text().split("-")[1]) if pointer.exists() else -1


def _env() -> dict:
    # 2 threads, as conftest sets for this process: the same float reductions in both
    return dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(Path(__file__).parents[1]))


def test_run_directory_outputs_and_overrides(tmp_path, capsys):
    cfg = _write(tmp_path, CONFIG)
    run = tmp_path / "run"
    rc = main(["--config", str(cfg), "--run-dir", str(run), "--no-progress",
               "--set", "generations=3", "--strategy.popsize=6"])  # fmt: skip
    assert rc == 0
    for f in ("config.yaml", "history.csv", "best.safetensors", "plot.png", "summary.md",
              "events.json", "checkpoints/latest"):  # fmt: skip
        assert (run / f).exists(), f
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["generations"] == 3 and resolved["strategy"]["popsize"] == 6
    rows = _rows(run)
    assert [int(r["generation"]) for r in rows] == [1, 2, 3]
    assert int(rows[-1]["evaluations"]) == 18
    assert "test_accuracy" in rows[1]
    assert "true evaluations" in capsys.readouterr().out
    from safetensors.torch import load_file

    from latent_evo.tasks import get_task

    best = load_file(str(run / "best.safetensors"))
    assert best.keys() == get_task("mnist1d-mlp-tiny").model.state_dict().keys()


def test_unknown_config_key_names_the_key(tmp_path, capsys):
    cfg = _write(tmp_path, {**CONFIG, "strategy": {"name": "ga", "popsize": 8, "sigma": 1}})
    assert main(["--config", str(cfg), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'strategy.sigma'" in err and str(cfg) in err
    assert main(["--config", str(cfg), "--set", "strategy.sigma=2"]) == 2
    assert main(["--config", str(_write(tmp_path, CONFIG, "ok.yaml")), "--set", "nope=1"]) == 2
    assert "'nope'" in capsys.readouterr().err


def test_compressor_option_runs_latent_mode(tmp_path):
    from latent_evo.compressor.attention import Compressor
    from latent_evo.compressor.tokenizer import Tokenizer
    from latent_evo.tasks import get_task

    task = get_task("mnist1d-mlp-tiny")
    torch.manual_seed(0)
    comp = Compressor.from_tokenizer(Tokenizer(task.spec, 64), d_model=16, n_heads=2,
                                     encoder_layers=1, num_latents=2, latent_dim=4)  # fmt: skip
    comp.save_pretrained(tmp_path / "comp")
    cfg = _write(tmp_path, {**CONFIG, "mode": "latent", "generations": 2, "eval_every": 0,
                            "strategy": {"name": "cma_es", "popsize": 4}})  # fmt: skip
    run = tmp_path / "run"
    rc = main(["--config", str(cfg), "--compressor", str(tmp_path / "comp"), "--run-dir",
               str(run), "--no-progress"])  # fmt: skip
    assert rc == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["compressor"] == str(tmp_path / "comp")
    assert [r["phase"] for r in _rows(run)] == ["latent", "latent"]


def _start(tmp_path: Path, run: Path, generations: int) -> subprocess.Popen:
    cfg = _write(tmp_path, {**CONFIG, "generations": generations})
    cmd = [sys.executable, "-m", "latent_evo.cli", "evolve", "--config", str(cfg),
           "--run-dir", str(run), "--no-progress"]  # fmt: skip
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_rows(proc: subprocess.Popen, run: Path, n: int, timeout: float = 120) -> None:
    t0 = time.time()
    while len(_rows(run)) < n:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode())
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("run made no progress")
        time.sleep(0.05)


def test_sigkill_resumes_from_last_checkpoint_bit_identically(tmp_path):
    run = tmp_path / "run"
    proc = _start(tmp_path, run, generations=1000)
    _wait_rows(proc, run, 5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(_rows(run))  # generations finished before the kill
    saved = _latest_gen(run)
    assert saved >= 4 and done - saved <= CONFIG["checkpoint_every"]  # lost <= one interval
    target = saved + 3
    rc = main(["--resume", str(run), "--set", f"generations={target}", "--no-progress"])
    assert rc == 0
    resumed = _rows(run)
    assert [int(r["generation"]) for r in resumed] == list(range(1, target + 1))
    # the same run uninterrupted gives the same CSV, to the last bit of every float
    ref = tmp_path / "ref"
    cfg = _write(tmp_path, {**CONFIG, "generations": target}, "ref.yaml")
    assert main(["--config", str(cfg), "--run-dir", str(ref), "--no-progress"]) == 0
    assert (run / "history.csv").read_text() == (ref / "history.csv").read_text()


def test_sigterm_checkpoints_and_exits(tmp_path):
    run = tmp_path / "run"
    proc = _start(tmp_path, run, generations=1000)
    _wait_rows(proc, run, 3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    rows = _rows(run)
    assert _latest_gen(run) == len(rows) == int(rows[-1]["generation"])  # nothing lost
    assert "interrupted | True" in (run / "summary.md").read_text()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_ranks_equal_single_process(tmp_path):
    # ~14 s on an idle 2-core machine (two extra Python processes importing torch)
    base = {**CONFIG, "generations": 3, "eval_every": 0,
            "task": {"name": "mnist1d-mlp-tiny", "overrides": {"chunk_size": 4}}}  # fmt: skip
    cfg = _write(tmp_path, base)
    single = tmp_path / "single"
    assert main(["--config", str(cfg), "--run-dir", str(single), "--no-progress"]) == 0
    multi = tmp_path / "multi"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", str(_free_port()), "-m", "latent_evo.cli", "evolve", "--config", str(cfg),
           "--run-dir", str(multi), "--no-progress"]  # fmt: skip
    out = subprocess.run(cmd, env=_env(), capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    assert (multi / "history.csv").read_text() == (single / "history.csv").read_text()
    from safetensors.torch import load_file

    a, b = load_file(str(multi / "best.safetensors")), load_file(str(single / "best.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in b)
