"""Environment steps per second of B = P x E = 256 x 4 = 1,024 environments, side by side.

    .venv/bin/python -m latent_evo.benchmarks.envs [--repeats 7] [--fast-repeats 25]
                                                    [--num-envs 1024] [--device cpu]

Why: an episodic task steps P x E environments every step of a population rollout, so the
environment's batched step bounds the rollout's speed. This measures the candidates for that
step on the same machine, in one process, interleaved (each repeat runs every candidate once),
one thread each, and reports medians: our torch implementations (`latent_evo.envs`), Gymnasium's
numpy `CartPoleVectorEnv`, Gymnasium's `SyncVectorEnv` / `AsyncVectorEnv`, our adapter around
`SyncVectorEnv` (numpy <-> torch included) and envpool (C++ thread pool) when installed. Random
actions are generated before the timer; auto-resetting candidates (Gymnasium, envpool) keep their
resets inside the timer, as a rollout would; ours never auto-reset (the rollout masks finished
episodes), and their reset (Gymnasium's per-seed numpy draws) is timed separately. Writes
`benchmarks/results/envs<suffix>.md` and `.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

from latent_evo.benchmarks.common import DEFAULT_OUT, provenance, provenance_md
from latent_evo.envs import make_env

ENV_IDS = ("CartPole-v1", "Pendulum-v1", "Acrobot-v1")
ASYNC_ENVS = 16  # one process per environment: 1,024 processes do not fit a 2-core machine


def _np_actions(env_id: str, steps: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if env_id.startswith("Pendulum"):
        return rng.uniform(-2.0, 2.0, size=(steps, n, 1)).astype(np.float32)
    n_actions = {"CartPole": 2, "Acrobot": 3, "LunarLander": 4}[env_id.split("-")[0]]
    return rng.integers(0, n_actions, size=(steps, n))


class Candidate:
    """One way of stepping `num_envs` environments: `reset()` outside the timer, `run(steps)`
    timed (actions pre-generated)."""

    def __init__(self, name: str, env_id: str, num_envs: int, steps: int, note: str):
        self.name, self.env_id, self.num_envs, self.steps, self.note = (
            name, env_id, num_envs, steps, note,
        )  # fmt: skip
        self.times: list[float] = []

    def reset(self) -> None:
        raise NotImplementedError

    def run(self, steps: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Ours(Candidate):
    def __init__(self, env_id, num_envs, steps, device, dtype=torch.float32):
        kind = "float64" if dtype == torch.float64 else "float32"
        super().__init__(f"ours, torch {kind} ({device})", env_id, num_envs, steps, "")
        self.env = make_env(env_id, num_envs, device=device, backend="torch", dtype=dtype)
        self.device = torch.device(device)
        self.actions = torch.from_numpy(_np_actions(env_id, steps, num_envs)).to(self.device)
        if self.actions.dtype == torch.float32:
            self.actions = self.actions.contiguous()

    def reset(self):
        self.env.reset(torch.arange(self.num_envs))

    def run(self, steps):
        for t in range(steps):
            self.env.step(self.actions[t])
        if self.device.type == "cuda":
            torch.cuda.synchronize()


class Gymnasium(Candidate):
    def __init__(self, env_id, num_envs, steps, mode, adapter=False):
        import gymnasium as gym

        label = {
            "vector_entry_point": "Gymnasium CartPoleVectorEnv (numpy)",
            "sync": "Gymnasium SyncVectorEnv",
            "async": "Gymnasium AsyncVectorEnv",
        }[mode]
        if adapter:
            label = "our GymnasiumEnv adapter over SyncVectorEnv"
        super().__init__(label, env_id, num_envs, steps, "")
        self.actions = _np_actions(env_id, steps, num_envs)
        self.adapter = None
        if adapter:
            self.adapter = make_env(env_id, num_envs, backend="gymnasium")
            self.torch_actions = torch.from_numpy(self.actions)
        else:
            self.vec = gym.make_vec(env_id, num_envs, vectorization_mode=mode)

    def reset(self):
        if self.adapter is not None:
            self.adapter.reset(torch.arange(self.num_envs))
        else:
            one_seed = not hasattr(self.vec, "set_attr")  # CartPoleVectorEnv: one seed
            self.vec.reset(seed=0 if one_seed else list(range(self.num_envs)))

    def run(self, steps):
        if self.adapter is not None:
            for t in range(steps):
                self.adapter.step(self.torch_actions[t])
        else:
            for t in range(steps):
                self.vec.step(self.actions[t])

    def close(self):
        (self.adapter or self.vec).close()


class EnvPool(Candidate):
    def __init__(self, env_id, num_envs, steps):
        import envpool

        super().__init__("envpool (C++, num_threads=1)", env_id, num_envs, steps, "")
        self.env = envpool.make_gymnasium(
            env_id, num_envs=num_envs, batch_size=num_envs, num_threads=1, seed=0
        )
        self.actions = _np_actions(env_id, steps, num_envs)

    def reset(self):
        self.env.reset()

    def run(self, steps):
        for t in range(steps):
            self.env.step(self.actions[t])

    def close(self):
        self.env.close()


def build(args) -> list[Candidate]:
    b, fast, slow = args.num_envs, args.fast_steps, args.slow_steps
    out: list[Candidate] = []
    try:
        import envpool  # noqa: F401

        have_envpool = True
    except ImportError:
        have_envpool = False
    env_ids = list(ENV_IDS)
    try:  # a Box2D task: no torch implementation, the adapter's sync-vs-async choice matters most
        import Box2D  # noqa: F401

        env_ids.append("LunarLander-v3")
    except ImportError:
        pass
    for env_id in env_ids:
        if env_id in ENV_IDS:
            out.append(Ours(env_id, b, fast, args.device))
        if env_id == "CartPole-v1":
            out.append(Ours(env_id, b, fast, args.device, dtype=torch.float64))
            out.append(Gymnasium(env_id, b, fast, "vector_entry_point"))
        if have_envpool and env_id in ENV_IDS:
            out.append(EnvPool(env_id, b, fast))
        out.append(Gymnasium(env_id, b, slow, "sync"))
        if env_id == "CartPole-v1":
            out.append(Gymnasium(env_id, b, slow, "sync", adapter=True))
        if not args.no_async:  # sync vs async at the same small B: the adapter's default
            out.append(Gymnasium(env_id, ASYNC_ENVS, fast, "sync"))
            out.append(Gymnasium(env_id, ASYNC_ENVS, fast, "async"))
    return out


def measure(cands: list[Candidate], repeats: int) -> None:
    for c in cands:  # warm-up: allocator, first-step checks, worker start
        c.reset()
        c.run(min(2, c.steps))
    for _ in range(repeats):
        for c in cands:
            c.reset()
            t = time.perf_counter()
            c.run(c.steps)
            c.times.append(time.perf_counter() - t)


def time_resets(env_id: str, num_envs: int, repeats: int) -> float:
    env = make_env(env_id, num_envs, backend="torch")
    seeds = torch.arange(num_envs)
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        env.reset(seeds)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


NOTES = [
    "What each candidate costs, and why the episodic tasks step our torch environments:",
    "",
    "- **ours (torch)**: one batched tensor computation per step, any device, torch in and out "
    "(no numpy round trip next to a torch policy), a physical parameter vector per environment "
    "(`params={'length': (B,)}`), and `reset(seeds)` reproduces `gymnasium.make(id)` episode for "
    "episode (tested step by step; float64 to rounding). Cost: the dynamics are ours to keep "
    "equal to Gymnasium's (three short files, covered by tests/test_envs.py), and only "
    "CartPole, Pendulum and Acrobot exist. On CPU the step is a few dozen small torch ops, so at "
    "B = 1,024 torch's per-op dispatch (2-3 us) is most of the time.",
    "- **Gymnasium CartPoleVectorEnv (numpy)**: the same few dozen elementwise ops over B values "
    "as ours, so the same order of speed on a CPU (on this shared 2-core machine, under 1-min "
    "loads of 3 to 9 from other jobs, ours/numpy ranged from 0.6x to 2x between runs); but "
    "CartPole only, CPU only, one set of physical constants for the whole batch, and its "
    "reset seeds ONE generator for the batch, so environment i's episode is not "
    "`gymnasium.make(id).reset(seed=s_i)`'s (no per-seed common random numbers).",
    "- **envpool**: C++ environments behind a thread pool; with one thread (the house rule for "
    "benchmarks) slower than ours at this B, no per-environment physical parameters, CPU only, a "
    "binary dependency (Linux x86 wheels). Not a dependency of the library.",
    "- **Gymnasium SyncVectorEnv**: a Python loop over B environment objects, 30-90 ms per "
    "batched step at B = 1,024; works for every Gymnasium environment, which is why the adapter "
    "(`GymnasiumEnv`, for any id without a torch implementation and for a user's own "
    "environment) wraps it. The adapter's numpy <-> torch conversion is noise next to the loop.",
    "- **Gymnasium AsyncVectorEnv**: one worker process per environment; on this 2-core machine "
    "inter-process traffic costs more than it saves, for every environment measured including "
    "the Box2D LunarLander, so the adapter defaults to `vectorization_mode='sync'` "
    "(`make_env(..., vectorization_mode='async')` remains for expensive environments on many "
    "cores).",
    "- Not measured here: gymnax / Gymnasium's JAX environments (JAX is not installed and is not "
    "a dependency), TorchRL and mujoco-torch (no classic-control batch with per-environment "
    "parameters); EvoTorch's VecGymNE steps Gymnasium vector environments, i.e. the Sync/Async "
    "rows, and is compared at the rollout level by the episodic task's benchmark. No GPU was "
    "available for this run: our environments are written device-agnostic (`device='cuda'`) "
    "but were not run on a GPU here.",
]


def _row(c: Candidate, reference: dict[str, float]) -> dict[str, Any]:
    per_step = statistics.median(c.times) / c.steps
    sps = c.num_envs / per_step
    return {
        "env": c.env_id,
        "candidate": c.name,
        "num_envs": c.num_envs,
        "us_per_batched_step": per_step * 1e6,
        "env_steps_per_s": sps,
        "vs_sync": sps / reference[c.env_id] if c.env_id in reference else float("nan"),
        "times": c.times,
        "steps_per_repeat": c.steps,
    }


def render(rows, resets, prov, args) -> str:
    lines = [
        "# Environment steps per second: batched envs for population rollouts",
        "",
        f"B = {args.num_envs:,} environments (P = 256 policies x E = 4 episodes) stepped with "
        "random actions, one thread per candidate, all in one process and interleaved (every "
        f"repeat runs every candidate once); medians over {args.fast_repeats} repeats "
        f"({args.repeats} for the SyncVectorEnv rows at B = {args.num_envs:,}, interleaved among "
        "themselves) after a warm-up. `x Sync` = steps/s over Gymnasium's SyncVectorEnv of "
        "the same environment. "
        f"AsyncVectorEnv runs one process per environment, so it is measured at B = {ASYNC_ENVS} "
        "(1,024 worker processes do not fit this machine), next to SyncVectorEnv at the same B.",
        "",
        "| env | candidate | B | us / batched step | env steps / s | x Sync |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['env']} | {r['candidate']} | {r['num_envs']:,} | "
            f"{r['us_per_batched_step']:,.0f} | {r['env_steps_per_s']:,.0f} | "
            f"{r['vs_sync']:.1f} |"
        )
    lines += ["", "Reset of our torch envs (per-environment Gymnasium seeding, a numpy loop):", ""]
    lines += [f"- {k}: {v * 1e3:.1f} ms for B = {args.num_envs:,}" for k, v in resets.items()]
    lines += ["", *NOTES, "", *provenance_md(prov), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-envs", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=7, help="repeats of the SyncVectorEnv rows")
    p.add_argument("--fast-repeats", type=int, default=25, help="repeats of all other rows")
    p.add_argument("--fast-steps", type=int, default=200, help="steps per repeat, batched envs")
    p.add_argument("--slow-steps", type=int, default=10, help="steps per repeat, SyncVectorEnv")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-async", action="store_true")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--suffix", default="")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    prov = provenance(argv, "python -m latent_evo.benchmarks.envs")
    cands = build(args)
    # the Python-loop candidates (SyncVectorEnv at B = num_envs) take ~100x longer per step: they
    # get fewer repeats, interleaved among themselves; every other candidate is interleaved with
    # all others over --fast-repeats rounds
    slow = [c for c in cands if c.steps == args.slow_steps and c.num_envs == args.num_envs]
    measure([c for c in cands if c not in slow], args.fast_repeats)
    measure(slow, args.repeats)
    reference = {
        c.env_id: c.num_envs * c.steps / statistics.median(c.times)
        for c in cands
        if c.name == "Gymnasium SyncVectorEnv" and c.num_envs == args.num_envs
    }
    rows = [_row(c, reference) for c in cands]
    resets = {e: time_resets(e, args.num_envs, args.repeats) for e in ENV_IDS}
    for c in cands:
        c.close()
    prov["load_avg_end"] = os.getloadavg()[0]
    text = render(rows, resets, prov, args)
    print(text)
    out = os.path.join(args.out, f"envs{args.suffix}")
    with open(out + ".md", "w") as f:
        f.write(text)
    with open(out + ".json", "w") as f:
        json.dump({"provenance": prov, "rows": rows, "resets_s": resets}, f, indent=1)


if __name__ == "__main__":
    main()
