"""RL benchmark (issue 30): our batched episodic rollouts and direct ES side by side with
EvoTorch's `VecGymNE` (PGPE, SNES) and with PPO from Stable-Baselines3.

    python -m latent_evo.benchmarks.rl --out benchmarks/results --seeds 0,1,2

Sections (`--sections`, all by default):
  speed       environment steps per second of one population rollout, P policies x E episodes
              (default 256 x 4): ours (`EpisodicTask.fitness_genomes`, alive steps from its
              `counters()`) vs EvoTorch's `VecGymNE.evaluate` (its `interaction_count`) on the
              same genomes of the same policy (obs -> 32 tanh -> 32 tanh -> act, one flat
              vector in the same order, observation normalisation off on both sides so that
              one genome is one policy), interleaved, medians of repeats; plus the share of our
              rollout spent in the policy forward (the task's vmapped forward and the env's
              step wrapped with timers; the task itself is not edited).
  efficiency  training episodes until the held-out test return (100 seeds) reaches the
              threshold, checked every generation on the search distribution's centre and on
              the best solution seen, for our PGPE / SNES (direct mode, fresh episode seeds
              every generation) and EvoTorch's PGPE / SNES through VecGymNE (its recommended
              CartPole settings), same env, policy, population, episodes per member and seeds.
  ppo         SB3 PPO (rl-zoo hyper-parameters) for as many environment steps as our best
              method's median run to the threshold; its return on the same held-out seeds.

Peers live in `benchmarks/rl_peers.py` (the `bench` extra). One torch thread, one process, no
ray actor. Writes rl.json, rl.md and rl_<env>.png under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from latent_evo.benchmarks.common import DEFAULT_OUT, provenance, provenance_md

HIDDEN = (32, 32)
ENVS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {"threshold": 500.0, "also": 475.0, "discrete": True},
    "Pendulum-v1": {"threshold": -200.0, "also": -400.0, "discrete": False},
}
OURS = ("pgpe", "snes")  # our strategies with their default hyper-parameters
PEERS = ("pgpe", "snes")  # EvoTorch's
LABEL = {
    "ours:pgpe": "latent-evo PGPE (direct)",
    "ours:snes": "latent-evo SNES (direct)",
    "evotorch:pgpe": "EvoTorch PGPE (VecGymNE)",
    "evotorch:snes": "EvoTorch SNES (VecGymNE)",
}


NOTES = [
    "Same policy on both sides: obs -> 32 tanh -> 32 tanh -> act (EvoTorch's network string "
    "`Linear(obs_length, 32) >> Tanh() >> Linear(32, 32) >> Tanh() >> Linear(32, act_length)`), "
    "one flat parameter vector in the same order (with observation normalisation off, one genome "
    "gives the same mean return in both libraries: the speed table's return column). Discrete "
    "actions: argmax of the outputs in both. Continuous: ours squashes with tanh into the bounds, "
    "EvoTorch clips the raw output to them.",
    "How E episodes run: ours steps P x E environments at once (our batched torch "
    "environments, `latent_evo.envs`); EvoTorch's VecGymNE steps P Gymnasium environments "
    "through its own SyncVectorEnv (a Python loop over single environments) and plays the E "
    "episodes of a member back to back.",
    "Counting: alive environment steps (steps of environments still inside their episode); "
    "ours from `EpisodicTask.counters()`, EvoTorch's from `interaction_count` / `episode_count`. "
    "Held-out test episodes are never counted as training episodes, on either side.",
    "Sample-efficiency settings: ours with our strategies' default hyper-parameters, direct "
    "mode, `fitness_batch=step` (fresh episode seeds every generation, the incumbent re-scored "
    "on them; those episodes are counted), observation normalisation on; EvoTorch with its "
    "CartPole recommendation (PGPE + ClipUp, max_speed 0.15, centre lr 0.1125, radius 2.25, "
    "stdev lr 0.1, stdev change <= 20 %, centred ranks, symmetric; its functional-API CartPole "
    "example) and SNES with EvoTorch's defaults and the same radius; observation normalisation "
    "on. Threshold check every generation: the centre and the best solution seen, each on the "
    "same 100 held-out seeds (ours in our torch environments, EvoTorch's own `to_policy` in "
    "Gymnasium's; both follow Gymnasium's seeding).",
    "PPO: Stable-Baselines3 MlpPolicy (64-64 tanh, separate value net), rl-zoo's tuned "
    "hyper-parameters, its own vectorised Gymnasium environments; a gradient reference at "
    "our budget, not a like-for-like policy.",
    "Machine: a 2-core CPU shared with two other engineers' builds and tests during the runs "
    "(1-min load averages are in the tables and rl.json); one torch thread, one benchmark "
    "process at a time, EvoTorch in-process (no ray actor). Absolute numbers are depressed and "
    "noisy under that load; the ratios come from interleaved runs in the same process.",
]


def _load() -> float:
    return os.getloadavg()[0]


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------------------------- speed
def _trained_centre(env_id: str, episodes_cap: int = 60) -> torch.Tensor | None:
    """A policy that solves CartPole (observation normalisation off, so that EvoTorch runs
    the same function): our PGPE, 64 x 1, until its centre scores 475 on the test seeds."""
    from latent_evo import evolve
    from latent_evo.tasks.episodic import EpisodicTask

    task = EpisodicTask(env_id, episodes=1, obs_norm=False, hidden=HIDDEN, seed=123)
    found: dict[str, torch.Tensor] = {}

    def cb(run: Any, rec: dict) -> None:
        mu = run.space.to_genomes(run.strategy.mu.reshape(1, -1))[0]
        if task.evaluate(mu)["test_return"] >= 475:
            found["mu"] = mu.clone()
            run.request_stop()

    evolve(task=task, mode="direct", strategy="pgpe", popsize=64, generations=episodes_cap,
           seed=123, eval_every=0, callbacks=[cb], fitness_batch="step", device="cpu")  # fmt: skip
    return found.get("mu")


def _instrumented(task: Any, env: Any) -> tuple[dict[str, float], Any]:
    """Wrap the task's vmapped policy forward and the env's step with timers (restored by the
    returned undo)."""
    acc = {"forward": 0.0, "env_step": 0.0, "calls": 0}
    fwd, step = task._forward, env.step

    def timed_forward(*a: Any) -> Any:
        t = time.perf_counter()
        out = fwd(*a)
        acc["forward"] += time.perf_counter() - t
        acc["calls"] += 1
        return out

    def timed_step(*a: Any) -> Any:
        t = time.perf_counter()
        out = step(*a)
        acc["env_step"] += time.perf_counter() - t
        return out

    task._forward, env.step = timed_forward, timed_step

    def undo() -> None:
        task._forward = fwd
        del env.step  # back to the class's method

    return acc, undo


def _ours_rollout(task: Any, genomes: torch.Tensor, r: int) -> tuple[float, float]:
    """One fitness rollout of ours: (alive env steps per second, mean return)."""
    c0 = task.counters()["env_steps"]
    t = time.perf_counter()
    f = task.fitness_genomes(genomes, task.batch(r))
    dt = time.perf_counter() - t
    return (task.counters()["env_steps"] - c0) / dt, float(-f.mean())


def _side_by_side(
    env_id: str, genomes: torch.Tensor, episodes: int, norm: bool, repeats: int
) -> dict[str, Any]:
    """Ours vs EvoTorch's VecGymNE (and, where Gymnasium has a numpy vector env, VecGymNE on
    it), interleaved, on the same genomes."""
    from latent_evo.benchmarks.rl_peers import evotorch_rollout, gym_numpy_vector_env, vecgymne
    from latent_evo.tasks.episodic import EpisodicTask

    numpy_vec = gym_numpy_vector_env(env_id) is not None
    task = EpisodicTask(env_id, episodes=episodes, obs_norm=norm, hidden=HIDDEN, seed=0)
    problem = vecgymne(env_id, HIDDEN, episodes, obs_norm=norm)
    fast = vecgymne(env_id, HIDDEN, episodes, norm, numpy_vec=True) if numpy_vec else None
    ours_sps, peer_sps, pair, ours_ret, peer_ret = [], [], [], [], []
    fast_sps: list[float] = []

    def peer() -> float:
        dt, steps, ret = evotorch_rollout(problem, genomes)
        peer_ret.append(ret)
        if fast is not None:  # EvoTorch on Gymnasium's numpy vector env, right after
            dt2, steps2, _ = evotorch_rollout(fast, genomes)
            fast_sps.append(steps2 / dt2)
        return steps / dt

    # warm-up (allocator, vmap, env construction); EvoTorch's on all-zero policies (one action
    # always: short episodes), so that a solved population costs no extra full rollout
    _ours_rollout(task, genomes, 10_000), evotorch_rollout(problem, torch.zeros_like(genomes))
    if fast is not None:
        evotorch_rollout(fast, torch.zeros_like(genomes))
    for r in range(repeats):
        if r % 2 == 0:  # alternate who goes first
            (a, ret), b = _ours_rollout(task, genomes, r), peer()
        else:
            b, (a, ret) = peer(), _ours_rollout(task, genomes, r)
        ours_sps.append(a)
        peer_sps.append(b)
        pair.append(a / b)
        ours_ret.append(ret)
    # our rollout's time split, measured apart (the timers cost time of their own)
    env = task._env(genomes.shape[0] * episodes)
    acc, undo = _instrumented(task, env)
    total = 0.0
    for r in range(repeats):
        t = time.perf_counter()
        task.fitness_genomes(genomes, task.batch(r))
        total += time.perf_counter() - t
    undo()
    floor = _forward_floor(task, genomes, episodes)
    per_step = total / max(acc["calls"], 1)
    return {
        "ours_steps_per_s": _median(ours_sps), "evotorch_steps_per_s": _median(peer_sps),
        "ratio_of_medians": _median(ours_sps) / _median(peer_sps),
        "median_pair_ratio": _median(pair), "ours_all": ours_sps, "evotorch_all": peer_sps,
        # EvoTorch on Gymnasium's numpy CartPoleVectorEnv (its next-step autoreset adds one
        # counted step per episode: in its favour)
        "evotorch_numpy_vec_steps_per_s": _median(fast_sps) if fast_sps else None,
        "ratio_vs_numpy_vec": _median(ours_sps) / _median(fast_sps) if fast_sps else None,
        "ours_mean_return": _median(ours_ret), "evotorch_mean_return": _median(peer_ret),
        "forward_share": acc["forward"] / total, "env_step_share": acc["env_step"] / total,
        "us_per_step": 1e6 * per_step, "us_forward_per_step": 1e6 * acc["forward"] / acc["calls"],
        "us_env_step_per_step": 1e6 * acc["env_step"] / acc["calls"], **floor,
        # the share the forward would take if it cost what a hand-written bmm chain costs
        "forward_share_at_bmm_floor": floor["us_bmm_forward"]
        / (1e6 * per_step - 1e6 * acc["forward"] / acc["calls"] + floor["us_bmm_forward"]),
    }  # fmt: skip


def _forward_floor(task: Any, genomes: torch.Tensor, episodes: int, calls: int = 200) -> dict:
    """Diagnosis of the forward share: the task's `vmap(functional_call)` forward vs the same
    MLP as a hand-written chain of batched matmuls (`baddbmm` + tanh) on `(P, E, obs)`, in
    microseconds per call (medians of 5 interleaved blocks of `calls` calls)."""
    P = genomes.shape[0]
    params = task.spec.unflatten(genomes)
    x = torch.randn(P, episodes, task.obs_dim, generator=torch.Generator().manual_seed(0))
    layers = [(params[f"layers.{i}.weight"], params[f"layers.{i}.bias"].unsqueeze(1))
              for i in range(len(HIDDEN) + 1)]  # fmt: skip

    def bmm() -> torch.Tensor:
        h = x
        for i, (w, b) in enumerate(layers):
            h = torch.baddbmm(b, h, w.transpose(1, 2))
            h = torch.tanh(h) if i < len(layers) - 1 else h
        return h

    def vm() -> torch.Tensor:
        return task._forward(params, x)

    with torch.no_grad():
        same = bool(torch.allclose(vm(), bmm(), atol=1e-5)) if task.discrete else None
        times: dict[str, list[float]] = {"vmap": [], "bmm": []}
        for _ in range(5):
            for name, fn in (("vmap", vm), ("bmm", bmm)):
                t = time.perf_counter()
                for _ in range(calls):
                    fn()
                times[name].append(1e6 * (time.perf_counter() - t) / calls)
    return {"us_vmap_forward": _median(times["vmap"]), "us_bmm_forward": _median(times["bmm"]),
            "bmm_matches": same}  # fmt: skip


def speed(
    env_id: str, popsize: int, episodes: int, repeats: int, repeats_solved: int
) -> dict[str, Any]:
    from latent_evo.tasks.episodic import EpisodicTask

    out: dict[str, Any] = {"env": env_id, "popsize": popsize, "episodes": episodes,
                           "repeats": repeats, "load_start": _load(), "populations": {}}  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    pops: dict[str, torch.Tensor] = {}
    probe = EpisodicTask(env_id, episodes=episodes, obs_norm=False, hidden=HIDDEN, seed=0)
    pops["fresh policies (init)"] = probe.init_genomes(popsize, gen)
    if ENVS[env_id]["discrete"]:
        mu = _trained_centre(env_id)
        if mu is not None:
            noise = 0.01 * torch.randn(popsize, mu.numel(), generator=gen)
            pops["solved policies (centre + N(0, 0.01^2))"] = mu + noise
    for pname, genomes in pops.items():
        row: dict[str, Any] = {}
        # observation normalisation on: EvoTorch's statistics and ours differ, so one genome is
        # no longer one policy; only the fresh population, whose episodes stay alike
        for norm in (False, True) if pname.startswith("fresh") else (False,):
            key = "obs_norm" if norm else "no_obs_norm"
            reps = repeats if pname.startswith("fresh") else repeats_solved
            row[key] = _side_by_side(env_id, genomes, episodes, norm, reps)
            print(f"[speed] {env_id} {pname} {key}: {row[key]['ratio_of_medians']:.2f}x, "
                  f"forward {100 * row[key]['forward_share']:.0f} %", flush=True)  # fmt: skip
        out["populations"][pname] = row
    out["load_end"] = _load()
    return out


# ---------------------------------------------------------------------------------- efficiency
def run_ours(
    strategy: str, env_id: str, popsize: int, episodes: int, seed: int, threshold: float,
    max_generations: int, time_cap: float, test_episodes: int = 100, progress: Any = None,
    check_every: int = 1,
) -> dict[str, Any]:  # fmt: skip
    from latent_evo import evolve
    from latent_evo.tasks.episodic import EpisodicTask

    task = EpisodicTask(env_id, episodes=episodes, hidden=HIDDEN, seed=seed,
                        test_episodes=test_episodes)  # fmt: skip
    curve: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def cb(run: Any, rec: dict) -> None:
        if rec["generation"] % check_every:
            if time.perf_counter() - t0 > time_cap:
                run.request_stop()
            return
        mu = run.space.to_genomes(run.strategy.mu.reshape(1, -1))[0]
        r = {
            "generation": rec["generation"], "episodes": int(rec["episodes"]),
            "env_steps": int(rec["env_steps"]), "seconds": time.perf_counter() - t0,
            "test_centre": task.evaluate(mu)["test_return"], "test_best": rec["test_return"],
        }  # fmt: skip
        curve.append(r)
        if progress is not None:
            progress(r)
        if r["test_centre"] >= threshold or r["seconds"] > time_cap:
            run.request_stop()

    evolve(task=task, mode="direct", strategy=strategy, popsize=popsize,
           generations=max_generations, seed=seed, eval_every=check_every, callbacks=[cb],
           fitness_batch="step", device="cpu")  # fmt: skip
    return {"curve": curve, "seconds": time.perf_counter() - t0}


def _first(curve: list[dict], level: float, centre: bool = False) -> dict | None:
    """The first generation whose centre (or, by default, centre or best seen) scores `level`
    on the held-out episodes."""
    score = (
        (lambda r: r["test_centre"])
        if centre
        else (lambda r: max(r["test_centre"], r["test_best"]))
    )
    return next((r for r in curve if score(r) >= level), None)


def efficiency(
    env_id: str, seeds: list[int], args: argparse.Namespace, save: Any, out: dict
) -> dict:
    from tqdm import tqdm

    from latent_evo.benchmarks.rl_peers import run_evotorch

    spec = ENVS[env_id]
    methods = [f"ours:{s}" for s in OURS] + [f"evotorch:{s}" for s in PEERS]
    out.update({"env": env_id, "popsize": args.popsize, "episodes": args.episodes,
                "check_every": args.check_every, "time_cap": args.time_cap,
                "threshold": spec["threshold"], "also": spec["also"], "runs": {}})  # fmt: skip
    bar = tqdm(total=len(seeds) * len(methods), desc=f"{env_id} runs", file=sys.stderr)
    for i, seed in enumerate(seeds):
        order = methods[i % len(methods) :] + methods[: i % len(methods)]  # rotate: share load
        for m in order:
            lib, algo = m.split(":")
            load0 = _load()

            def show(r: dict, m: str = m, seed: int = seed) -> None:
                bar.set_postfix_str(f"{m} s{seed} g{r['generation']} ep{r['episodes']} "
                                    f"test {r['test_centre']:.0f}/{r['test_best']:.0f}")  # fmt: skip

            kw = dict(env_id=env_id, popsize=args.popsize, episodes=args.episodes, seed=seed,
                      threshold=spec["threshold"], max_generations=args.max_generations,
                      time_cap=args.time_cap, progress=show, check_every=args.check_every)  # fmt: skip
            if lib == "ours":
                res = run_ours(algo, **kw)
            else:
                res = run_evotorch(algo, hidden=HIDDEN, discrete=spec["discrete"], **kw)
            res["load"] = [load0, _load()]
            res["reached"] = _first(res["curve"], spec["threshold"])
            res["centre_reached"] = _first(res["curve"], spec["threshold"], centre=True)
            res["also_reached"] = _first(res["curve"], spec["also"])
            out["runs"].setdefault(m, {})[str(seed)] = res
            bar.update(1)
            save()
    bar.close()
    return out


CRITERIA = {
    "reached": "centre or best seen",
    "centre_reached": "centre",
}


def ppo(env_id: str, seeds: list[int], eff: dict, save: Any, out: dict) -> dict[str, Any]:
    """PPO at the environment steps of our best method's median run to the threshold, under
    each criterion (centre or best seen; centre)."""
    from latent_evo.benchmarks.rl_peers import run_ppo

    out.update({"env": env_id, "budgets": {}})
    for key in CRITERIA:
        best, budget = _best_ours(eff, key)
        entry = {"budget_from": best, "env_steps": budget, "runs": {}}
        out["budgets"][key] = entry
        if budget is None:
            entry["note"] = "no method of ours reached the threshold: no budget to give PPO"
            continue
        for seed in seeds:
            load0 = _load()
            r = {**run_ppo(env_id, budget, seed), "load": [load0, _load()]}
            entry["runs"][str(seed)] = r
            print(f"[ppo] {env_id} {key} {budget} steps, seed {seed}: {r['test_return']:.1f}",
                  flush=True)  # fmt: skip
            save()
    return out


def _summary(runs: dict[str, dict], key: str = "reached") -> dict[str, Any]:
    reached = [r[key] for r in runs.values() if r.get(key)]
    return {
        "solved": len(reached), "seeds": len(runs),
        "episodes": [r[key]["episodes"] if r.get(key) else None for r in runs.values()],
        "median_episodes": _median([r["episodes"] for r in reached]),
        "median_env_steps": _median([r["env_steps"] for r in reached]),
        "median_generations": _median([r["generation"] for r in reached]),
        "median_seconds": _median([r["seconds"] for r in reached]),
    }  # fmt: skip


def _best_ours(eff: dict, key: str = "reached") -> tuple[str | None, int | None]:
    """Our method that solved most seeds, then with the fewest median episodes."""
    cands = [(m, _summary(r, key)) for m, r in eff["runs"].items() if m.startswith("ours:")]
    cands = [(m, s) for m, s in cands if s["solved"]]
    if not cands:
        return None, None
    m, s = min(cands, key=lambda c: (-c[1]["solved"], c[1]["median_episodes"]))
    return m, int(s["median_env_steps"])


# ---------------------------------------------------------------------------------- report
def plot(eff: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"ours:pgpe": "C0", "ours:snes": "C2", "evotorch:pgpe": "C3", "evotorch:snes": "C1"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m, runs in eff["runs"].items():
        for k, res in enumerate(runs.values()):
            xs = [r["episodes"] for r in res["curve"]]
            c = colors.get(m, "k")
            ax.plot(xs, [r["test_centre"] for r in res["curve"]], color=c, alpha=0.8, lw=1.2,
                    label=LABEL.get(m, m) if k == 0 else None)  # fmt: skip
            ax.plot(xs, [r["test_best"] for r in res["curve"]], color=c, alpha=0.5, lw=0.8, ls=":")
    ax.axhline(eff["threshold"], color="gray", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("training episodes (log)")
    ax.set_ylabel(f"test return ({eff.get('test_episodes', 100)} held-out seeds)")
    ax.set_title(f"{eff['env']}: P={eff['popsize']}, E={eff['episodes']}; one line per seed; "
                 "solid: centre, dotted: best seen", fontsize=9)  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(x: Any, nd: int = 0) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "—"
    return f"{x:,.{nd}f}"


def verdicts(res: dict[str, Any]) -> list[str]:
    """One line per target of issue 30, from the measurements (met or missed, with numbers)."""
    out = []
    for env_id, sp in res.get("speed", {}).items():
        rows = [(p, k, r) for p, row in sp["populations"].items() for k, r in row.items()]
        off = [(p, r) for p, k, r in rows if k == "no_obs_norm"]
        lo = min(r["ratio_of_medians"] for _, r in off)
        hi = max(r["ratio_of_medians"] for _, r in off)
        fast = [r["ratio_vs_numpy_vec"] for _, r in off if r.get("ratio_vs_numpy_vec")]
        extra = (f"; against VecGymNE on Gymnasium's numpy vector env {min(fast):.2f}x to "
                 f"{max(fast):.2f}x" if fast else "")  # fmt: skip
        if any(k == "obs_norm" for _, k, _ in rows):
            on = [r["ratio_of_medians"] for _, k, r in rows if k == "obs_norm"]
            extra += f"; obs. norm on (fresh policies): {min(on):.2f}x"
        span = f"{lo:.2f}x" if len(off) == 1 else f"{lo:.2f}x to {hi:.2f}x (by population)"
        out.append(
            f"Speed, {env_id}, P={sp['popsize']} x E={sp['episodes']}, obs. norm off: ours {span} "
            f"EvoTorch's VecGymNE steps/s (target >= 1.5x: "
            f"{'met' if lo >= 1.5 else 'missed'}){extra}."
        )
        shares = [r["forward_share"] for _, _, r in rows]
        floor = [r["forward_share_at_bmm_floor"] for _, _, r in rows]
        cost = [r["us_vmap_forward"] / r["us_bmm_forward"] for _, _, r in rows]
        out.append(
            f"Forward share, {env_id}: {100 * min(shares):.0f} % to {100 * max(shares):.0f} % of "
            f"our rollout (target <= 25 %: {'met' if max(shares) <= 0.25 else 'missed'}). "
            f"`vmap(functional_call)` costs {min(cost):.1f}x to {max(cost):.1f}x the same MLP "
            "written as a `baddbmm` + tanh chain; at the chain's cost the share would be "
            f"{100 * min(floor):.0f} % to {100 * max(floor):.0f} %."
        )
    for env_id, eff in res.get("efficiency", {}).items():
        for key, crit in CRITERIA.items():
            best = {}
            for lib in ("ours", "evotorch"):
                cands = [(m, _summary(r, key)) for m, r in eff["runs"].items()
                         if m.startswith(lib + ":")]  # fmt: skip
                cands = [c for c in cands if c[1]["solved"]]
                if cands:
                    best[lib] = min(cands, key=lambda c: (-c[1]["solved"], c[1]["median_episodes"]))
            if len(best) < 2:
                who = (f"only {LABEL[next(iter(best.values()))[0]]}" if best
                       else "no method of either library")  # fmt: skip
                out.append(f"Sample efficiency, {env_id} to {eff['threshold']:g} ({crit}): "
                           f"{who} reached it within the caps ({eff.get('time_cap', '?')} s, "
                           f"{len(next(iter(eff['runs'].values())))} seeds).")  # fmt: skip
                continue
            (mo, so), (me, se) = best["ours"], best["evotorch"]
            ok = so["solved"] >= se["solved"] and so["median_episodes"] <= se["median_episodes"]
            out.append(
                f"Sample efficiency, {env_id} to {eff['threshold']:g} ({crit}): "
                f"{LABEL[mo]} {_fmt(so['median_episodes'])} episodes (median, "
                f"{so['solved']}/{so['seeds']} seeds) vs {LABEL[me]} "
                f"{_fmt(se['median_episodes'])} ({se['solved']}/{se['seeds']}): "
                f"{se['median_episodes'] / so['median_episodes']:.1f}x fewer for ours (target: "
                f"no more than EvoTorch's: {'met' if ok else 'missed'})."
            )
    for env_id, pp in res.get("ppo", {}).items():
        for key, entry in pp.get("budgets", {}).items():
            if entry["runs"]:
                rets = [r["test_return"] for r in entry["runs"].values()]
                out.append(
                    f"PPO reference, {env_id}, at {entry['env_steps']:,} steps ({CRITERIA[key]} "
                    f"budget): median test return {_median(rets):.1f} over {len(rets)} seeds."
                )
    return out


def report(res: dict[str, Any], out: Path) -> None:
    lines = ["# RL: latent-evo vs EvoTorch (VecGymNE) and SB3 PPO", ""]
    lines += provenance_md(res["provenance"]) + [""]
    lines += ["## Against issue 30's targets", "", *[f"- {v}" for v in verdicts(res)], ""]
    for env_id, sp in res.get("speed", {}).items():
        lines += [f"## Speed: {env_id}, one rollout of P={sp['popsize']} policies x "
                  f"E={sp['episodes']} episodes", "",
                  f"Alive environment steps per second, medians of {sp['repeats']} interleaved "
                  f"repeats (load {sp['load_start']:.1f} -> {sp['load_end']:.1f}). Forward share: "
                  "our rollout's time inside the vmapped policy call (target <= 25 %).", "",
                  "| population | obs. norm | ours steps/s | EvoTorch steps/s | ratio (target >= 1.5) "
                  "| median pair ratio | mean return ours / EvoTorch | forward share | env step share "
                  "| EvoTorch on Gymnasium's numpy vector env: steps/s (ours / it) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for pname, row in sp["populations"].items():
            for key, r in row.items():
                lines.append(
                    f"| {pname} | {'on' if key == 'obs_norm' else 'off'} | "
                    f"{_fmt(r['ours_steps_per_s'])} | {_fmt(r['evotorch_steps_per_s'])} | "
                    f"**{r['ratio_of_medians']:.2f}x** | {r['median_pair_ratio']:.2f}x | "
                    f"{r['ours_mean_return']:.1f} / {r['evotorch_mean_return']:.1f} | "
                    f"{100 * r['forward_share']:.0f} % | {100 * r['env_step_share']:.0f} % | "
                    + (
                        f"{_fmt(r['evotorch_numpy_vec_steps_per_s'])} ({r['ratio_vs_numpy_vec']:.2f}x) |"
                        if r.get("ratio_vs_numpy_vec")
                        else "— |"
                    )  # fmt: skip
                )
        lines += ["", "Where our rollout's time goes, per environment step of the whole batch "
                  "(instrumented runs), and the same MLP forward written as a chain of "
                  "`baddbmm` + tanh on `(P, E, obs)` (what a vmap-free forward would cost):", "",
                  "| population | obs. norm | µs per step | µs forward (vmap) | µs env step | "
                  "µs forward as bmm chain | forward share at the bmm cost |",
                  "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for pname, row in sp["populations"].items():
            for key, r in row.items():
                lines.append(
                    f"| {pname} | {'on' if key == 'obs_norm' else 'off'} | {r['us_per_step']:.0f} | "
                    f"{r['us_forward_per_step']:.0f} | {r['us_env_step_per_step']:.0f} | "
                    f"{r['us_bmm_forward']:.0f} | {100 * r['forward_share_at_bmm_floor']:.0f} % |"
                )
        lines.append("")
    for env_id, eff in res.get("efficiency", {}).items():
        thr = eff["threshold"]
        lines += [f"## Sample efficiency: {env_id} to test return {thr:g}", "",
                  f"P={eff['popsize']}, E={eff['episodes']} episodes per member; test = 100 "
                  f"held-out seeds, checked every {eff.get('check_every', 1)} generation(s) on "
                  "the centre and on the best "
                  "solution seen; training episodes counted as each library counts them "
                  "(ours includes re-scoring the incumbent on each generation's fresh seeds). "
                  f"Plot: `rl_{env_id.split('-')[0].lower()}.png`.", "",
                  f"| method | criterion | solved | episodes to {thr:g} (median) | per seed "
                  f"| env steps (median) | generations | wall s | episodes to {eff['also']:g} "
                  "(median) |", "|---|---|---:|---:|---|---:|---:|---:|---:|"]  # fmt: skip
        for m, runs in eff["runs"].items():
            for key, crit in CRITERIA.items():
                s = _summary(runs, key)
                also = _median([r["also_reached"]["episodes"] for r in runs.values()
                                if r.get("also_reached")]) if key == "reached" else None  # fmt: skip
                per = ", ".join(_fmt(e) for e in s["episodes"])
                lines.append(
                    f"| {LABEL.get(m, m)} | {crit} | {s['solved']}/{s['seeds']} | "
                    f"{_fmt(s['median_episodes'])} | {per} | {_fmt(s['median_env_steps'])} | "
                    f"{_fmt(s['median_generations'])} | {_fmt(s['median_seconds'])} | {_fmt(also)} |"
                )
        lines += ["", "Wall seconds include the per-generation test evaluations (200 held-out "
                  "episodes a generation on both sides).", ""]  # fmt: skip
    for env_id, pp in res.get("ppo", {}).items():
        lines += [f"## Gradient reference: SB3 PPO on {env_id}", "",
                  "MlpPolicy (64-64 tanh) with rl-zoo's hyper-parameters, trained for as many "
                  "environment steps as our best method's median run to the threshold (per "
                  "criterion); its deterministic policy on the same 100 held-out seeds.", "",
                  "| budget (criterion, from) | env steps | test return per seed | median |",
                  "|---|---:|---|---:|"]  # fmt: skip
        for key, entry in pp.get("budgets", {}).items():
            if not entry["runs"]:
                lines.append(f"| {CRITERIA[key]} | — | {entry.get('note', 'not run')} | — |")
                continue
            rets = [r["test_return"] for r in entry["runs"].values()]
            per = ", ".join(f"{x:.1f}" for x in rets)
            lines.append(
                f"| {CRITERIA[key]}, {LABEL.get(entry['budget_from'], entry['budget_from'])} | "
                f"{entry['env_steps']:,} | {per} | {_median(rets):.1f} |"
            )
        lines.append("")
    lines += ["## Notes", "", *[f"- {n}" for n in NOTES], ""]
    (out / "rl.md").write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--envs", default="CartPole-v1")
    p.add_argument("--speed-envs", default="CartPole-v1,Pendulum-v1")
    p.add_argument("--sections", default="speed,efficiency,ppo", help="or render: from rl.json")
    p.add_argument("--speed-popsize", type=int, default=256)
    p.add_argument("--speed-episodes", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--repeats-solved", type=int, default=3, help="speed, solved population")
    p.add_argument("--popsize", type=int, default=100, help="efficiency runs (EvoTorch's CartPole example: 100)")  # fmt: skip
    p.add_argument("--episodes", type=int, default=1, help="episodes per member (efficiency)")
    p.add_argument("--max-generations", type=int, default=200)
    p.add_argument("--time-cap", type=float, default=300.0, help="seconds per efficiency run")
    p.add_argument("--ppo-seeds", default=None, help="default: --seeds")
    p.add_argument("--check-every", type=int, default=1, help="generations between test checks")
    p.add_argument("--merge", action="store_true", help="keep the other sections of rl.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    sections = set(args.sections.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "rl.json"
    res: dict[str, Any] = {}
    if (args.merge or "render" in sections) and path.is_file():
        res = json.loads(path.read_text())
    if "render" in sections:  # tables and plots again from rl.json, nothing run
        res["provenance"]["rendered_by"] = f"python -m latent_evo.benchmarks.rl {' '.join(argv)}"
        for env_id, eff in res.get("efficiency", {}).items():
            plot(eff, args.out / f"rl_{env_id.split('-')[0].lower()}.png")
        report(res, args.out)
        return
    prov = provenance(argv, "python -m latent_evo.benchmarks.rl")
    earlier = res.get("runs_provenance", [])
    if earlier:
        prov["merged"] = [{k: p_[k] for k in ("command", "commit", "started")} for p_ in earlier]
    res["runs_provenance"] = [*earlier, {k: v for k, v in prov.items() if k != "merged"}]
    res["provenance"] = prov

    def save() -> None:
        prov["load_avg_end"] = _load()
        path.write_text(json.dumps(res, indent=1))

    if "speed" in sections:
        for env_id in args.speed_envs.split(","):
            res.setdefault("speed", {})[env_id] = speed(
                env_id, args.speed_popsize, args.speed_episodes, args.repeats, args.repeats_solved
            )
            save()
    for env_id in args.envs.split(","):
        if "efficiency" in sections:
            res.setdefault("efficiency", {})[env_id] = eff = {}
            efficiency(env_id, seeds, args, save, eff)
            save()
        if "ppo" in sections and env_id in res.get("efficiency", {}):
            res.setdefault("ppo", {})[env_id] = pp = {}
            ppo_seeds = [int(x) for x in args.ppo_seeds.split(",")] if args.ppo_seeds else seeds
            ppo(env_id, ppo_seeds, res["efficiency"][env_id], save, pp)
            save()
        if env_id in res.get("efficiency", {}):
            plot(res["efficiency"][env_id], args.out / f"rl_{env_id.split('-')[0].lower()}.png")
    save()
    report(res, args.out)
    print(f"wrote {args.out / 'rl.md'}", flush=True)


if __name__ == "__main__":
    main()
