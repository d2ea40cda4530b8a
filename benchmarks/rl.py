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
              rollout spent in the policy forward (the task's population forward and the env's
              step wrapped with timers; the task itself is not edited).
  efficiency  training episodes until the held-out test return (100 seeds) reaches the
              threshold, checked every generation on the search distribution's centre and on
              the best solution seen, for our PGPE / SNES (direct mode, fresh episode seeds
              every generation) and EvoTorch's PGPE / SNES through VecGymNE (its recommended
              CartPole settings), same env, policy, population, episodes per member and seeds.
  ppo         SB3 PPO (rl-zoo hyper-parameters) for as many environment steps as our best
              method's median run to the threshold; its return on the same held-out seeds.

Peers, and the tables and plot, live in `benchmarks/rl_peers.py` (the `bench` extra). One
torch thread, one process, no ray actor. Writes rl.json, rl.md and rl_<env>.png under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from latent_evo.benchmarks.common import DEFAULT_OUT, provenance
from latent_evo.benchmarks.rl_peers import CRITERIA, median, plot, report, summary

HIDDEN = (32, 32)
ENVS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {"threshold": 500.0, "also": 475.0, "discrete": True},
    "Pendulum-v1": {"threshold": -200.0, "also": -400.0, "discrete": False},
}
OURS = ("pgpe", "snes")  # our strategies with their default hyper-parameters
PEERS = ("pgpe", "snes")  # EvoTorch's


def _load() -> float:
    return os.getloadavg()[0]


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
    """Wrap the task's population forward and the env's step with timers (restored by the
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
        "ours_steps_per_s": median(ours_sps), "evotorch_steps_per_s": median(peer_sps),
        "ratio_of_medians": median(ours_sps) / median(peer_sps),
        "median_pair_ratio": median(pair), "ours_all": ours_sps, "evotorch_all": peer_sps,
        # EvoTorch on Gymnasium's numpy CartPoleVectorEnv (its next-step autoreset adds one
        # counted step per episode: in its favour)
        "evotorch_numpy_vec_steps_per_s": median(fast_sps) if fast_sps else None,
        "ratio_vs_numpy_vec": median(ours_sps) / median(fast_sps) if fast_sps else None,
        "ours_mean_return": median(ours_ret), "evotorch_mean_return": median(peer_ret),
        "forward_share": acc["forward"] / total, "env_step_share": acc["env_step"] / total,
        "us_per_step": 1e6 * per_step, "us_forward_per_step": 1e6 * acc["forward"] / acc["calls"],
        "us_env_step_per_step": 1e6 * acc["env_step"] / acc["calls"], **floor,
        # the share the forward would take if it cost what a hand-written bmm chain costs
        "forward_share_at_bmm_floor": floor["us_bmm_forward"]
        / (1e6 * per_step - 1e6 * acc["forward"] / acc["calls"] + floor["us_bmm_forward"]),
    }  # fmt: skip


def _forward_floor(task: Any, genomes: torch.Tensor, episodes: int, calls: int = 200) -> dict:
    """Diagnosis of the forward share, microseconds per call on `(P, E, obs)` (medians of 5
    interleaved blocks of `calls` calls): the task's own population forward, a
    `vmap(functional_call)` of its policy module, and the same MLP hand-written as a chain of
    `baddbmm` + tanh (the arithmetic without framework overhead)."""
    from torch.func import functional_call, vmap

    P = genomes.shape[0]
    params = task.spec.unflatten(genomes)
    x = torch.randn(P, episodes, task.obs_dim, generator=torch.Generator().manual_seed(0))
    layers = [(params[f"layers.{i}.weight"], params[f"layers.{i}.bias"].unsqueeze(1))
              for i in range(len(HIDDEN) + 1)]  # fmt: skip
    vmapped = vmap(lambda p, o: functional_call(task.model, p, (o,)))

    def bmm() -> torch.Tensor:
        h = x
        for i, (w, b) in enumerate(layers):
            h = torch.baddbmm(b, h, w.transpose(1, 2))
            h = torch.tanh(h) if i < len(layers) - 1 else h
        return h

    fns = {"task": lambda: task._forward(params, x), "vmap": lambda: vmapped(params, x), "bmm": bmm}
    with torch.no_grad():
        same = bool(torch.allclose(fns["task"](), bmm(), atol=1e-5)) if task.discrete else None
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(5):
            for name, fn in fns.items():
                t = time.perf_counter()
                for _ in range(calls):
                    fn()
                times[name].append(1e6 * (time.perf_counter() - t) / calls)
    kind = (
        getattr(getattr(task._forward, "func", None), "__name__", None) or "vmap(functional_call)"
    )
    return {"us_task_forward": median(times["task"]), "us_vmap_forward": median(times["vmap"]),
            "us_bmm_forward": median(times["bmm"]), "bmm_matches": same,
            "task_forward_kind": kind}  # fmt: skip


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
    if args.methods:  # a subset, or extra variants such as evotorch:pgpe@init
        methods = args.methods.split(",")
    out.update({"env": env_id, "popsize": args.popsize, "episodes": args.episodes,
                "check_every": args.check_every, "time_cap": args.time_cap,
                "max_generations": args.max_generations,
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
            else:  # "pgpe@init": its centre starts at a PyTorch init of the policy, as ours
                init = None
                if algo.endswith("@init"):
                    from latent_evo.tasks.episodic import EpisodicTask

                    probe = EpisodicTask(env_id, hidden=HIDDEN, seed=seed)
                    init = probe.init_genomes(1, torch.Generator().manual_seed(seed))[0]
                res = run_evotorch(algo.split("@")[0], hidden=HIDDEN, discrete=spec["discrete"],
                                   center_init=init, **kw)  # fmt: skip
            res["load"] = [load0, _load()]
            res["reached"] = _first(res["curve"], spec["threshold"])
            res["centre_reached"] = _first(res["curve"], spec["threshold"], centre=True)
            res["also_reached"] = _first(res["curve"], spec["also"])
            out["runs"].setdefault(m, {})[str(seed)] = res
            bar.update(1)
            save()
    bar.close()
    return out


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


def _best_ours(eff: dict, key: str = "reached") -> tuple[str | None, int | None]:
    """Our method that solved most seeds, then with the fewest median episodes."""
    cands = [(m, summary(r, key)) for m, r in eff["runs"].items() if m.startswith("ours:")]
    cands = [(m, s) for m, s in cands if s["solved"]]
    if not cands:
        return None, None
    m, s = min(cands, key=lambda c: (-c[1]["solved"], c[1]["median_episodes"]))
    return m, int(s["median_env_steps"])


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
    p.add_argument("--methods", default=None, help="efficiency subset, e.g. ours:pgpe")
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
        if res.get("speed"):  # an earlier speed run: kept, the report shows run to run
            started = res.get("speed_started", "an earlier run")
            res.setdefault("speed_history", []).append({"started": started, "speed": res["speed"]})
        res["speed"], res["speed_started"] = {}, prov["started"]
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
