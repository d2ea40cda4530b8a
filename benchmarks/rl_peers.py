"""The peer libraries of the RL benchmark (`benchmarks/rl.py`), EvoTorch's `VecGymNE` with its
PGPE / SNES and PPO from Stable-Baselines3, and the side-by-side report (tables, verdicts
against issue 30's targets, plot). Imported only by the benchmark (the `bench`
extra: `pip install -e .[bench]`); the library never imports evotorch or SB3.

Every peer runs in this process with one torch thread and no ray actor (`num_actors=None`).
Peer policies are scored on the same held-out episodes as ours: Gymnasium's reference
environments reset with the test seeds `TEST_SEED_BASE + i` (our torch environments follow
Gymnasium's seeding, so both libraries meet the same initial states).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latent_evo.benchmarks.common import provenance_md
from latent_evo.tasks.episodic import TEST_SEED_BASE

# EvoTorch's own recommendation for CartPole-v1 (docs, Functional_API/problem.ipynb: PGPE with
# ClipUp, max_speed 0.15, centre step 0.75 x max_speed, radius 15 x max_speed, stdev step 0.1,
# stdev change capped at 20 %, centred ranks, symmetric sampling, centre initialised at 0).
# Its SNES has no RL example: its defaults (NES ranks, paper learning rates) with the same
# initial radius.
EVOTORCH_MAX_SPEED = 0.15
EVOTORCH_PGPE = {
    "center_learning_rate": 0.75 * EVOTORCH_MAX_SPEED,
    "stdev_learning_rate": 0.1,
    "stdev_max_change": 0.2,
    "radius_init": 15 * EVOTORCH_MAX_SPEED,
    "optimizer": "clipup",
    "optimizer_config": {"max_speed": EVOTORCH_MAX_SPEED},
    "ranking_method": "centered",
    "symmetric": True,
}
EVOTORCH_SNES = {"radius_init": 15 * EVOTORCH_MAX_SPEED}

# rl-zoo's tuned PPO for the classic-control tasks (rl-baselines3-zoo hyperparams/ppo.yml)
PPO_ZOO: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "n_envs": 8, "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98,
        "n_epochs": 20, "ent_coef": 0.0, "learning_rate": ("lin", 0.001), "clip_range": ("lin", 0.2),
    },
    "Pendulum-v1": {
        "n_envs": 4, "n_steps": 1024, "gae_lambda": 0.95, "gamma": 0.9, "n_epochs": 10,
        "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2, "use_sde": True,
        "sde_sample_freq": 4,
    },
}  # fmt: skip


def evotorch_net(hidden: tuple[int, ...]) -> str:
    """EvoTorch's network string for our default policy: obs -> h tanh -> ... -> act."""
    sizes = ["obs_length", *map(str, hidden), "act_length"]
    layers = [f"Linear({a}, {b})" for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    return " >> Tanh() >> ".join(layers)


def gym_numpy_vector_env(env_id: str) -> Callable[..., Any] | None:
    """A factory of Gymnasium's own numpy-vectorised environment (`CartPoleVectorEnv`: one
    array op per step for all environments), for VecGymNE's callable `env`; None where
    Gymnasium has none (Pendulum, Acrobot)."""
    import gymnasium as gym

    if gym.spec(env_id).vector_entry_point is None:
        return None

    def make(num_envs: int, **_: Any) -> Any:
        return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")

    make.__name__ = f"{env_id} (Gymnasium numpy vector env)"
    return make


def vecgymne(
    env_id: str, hidden: tuple[int, ...], episodes: int, obs_norm: bool, numpy_vec: bool = False
) -> Any:
    """EvoTorch's VecGymNE of our policy; `numpy_vec`: on Gymnasium's numpy-vectorised env
    instead of EvoTorch's default (its SyncVectorEnv over single Gymnasium envs)."""
    from evotorch.neuroevolution import VecGymNE

    env = gym_numpy_vector_env(env_id) if numpy_vec else env_id
    return VecGymNE(
        env, evotorch_net(hidden), num_episodes=episodes,
        observation_normalization=obs_norm, num_actors=None,
    )  # fmt: skip


def evotorch_rollout(problem: Any, genomes: torch.Tensor) -> tuple[float, int, float]:
    """Evaluate `(P, n)` genomes once: (seconds, alive env steps, mean return)."""
    batch = problem.generate_batch(genomes.shape[0])
    batch.set_values(genomes.to(torch.float32).clone())
    s0, e0 = problem.interaction_count, problem.episode_count
    t = time.perf_counter()
    problem.evaluate(batch)
    dt = time.perf_counter() - t
    assert problem.episode_count - e0 == batch.values.shape[0] * problem._num_episodes
    return dt, problem.interaction_count - s0, float(batch.evals.mean())


# ------------------------------------------------------------------ held-out test episodes
def gym_test_return(
    env_id: str, act: Callable[[torch.Tensor], np.ndarray], episodes: int = 100
) -> dict[str, float]:
    """Mean return of `act` (float32 observations `(N, obs)` -> actions `(N, ...)`) over the
    held-out seeds `TEST_SEED_BASE + i`, in Gymnasium's reference environments."""
    import gymnasium as gym

    env = gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync")
    try:
        obs, _ = env.reset(seed=[TEST_SEED_BASE + i for i in range(episodes)])
        alive = np.ones(episodes, dtype=bool)
        returns = np.zeros(episodes)
        lengths = np.zeros(episodes, dtype=np.int64)
        while alive.any():
            with torch.no_grad():
                a = act(torch.as_tensor(obs, dtype=torch.float32))
            obs, r, term, trunc, _ = env.step(a)
            returns += np.where(alive, r, 0.0)
            lengths += alive
            alive &= ~(term | trunc)
    finally:
        env.close()
    return {"test_return": float(returns.mean()), "test_episode_length": float(lengths.mean())}


def evotorch_actor(problem: Any, solution: torch.Tensor, discrete: bool) -> Callable:
    """EvoTorch's own policy of a solution (with its observation normaliser and action
    clipping, `to_policy`) as a batched actor; argmax for Discrete, as VecGymNE does."""
    policy = problem.to_policy(solution)

    def act(obs: torch.Tensor) -> np.ndarray:
        out = policy(obs)
        return (out.argmax(-1) if discrete else out).cpu().numpy()

    return act


# ------------------------------------------------------------------ EvoTorch searches
def run_evotorch(
    algo: str, env_id: str, hidden: tuple[int, ...], popsize: int, episodes: int, seed: int,
    threshold: float, max_generations: int, time_cap: float, discrete: bool,
    test_episodes: int = 100, progress: Callable[[dict], None] | None = None,
    check_every: int = 1, center_init: torch.Tensor | None = None,
) -> dict[str, Any]:  # fmt: skip
    """EvoTorch `algo` ("pgpe" / "snes") through VecGymNE until the centre of its search
    distribution scores `threshold` on the held-out episodes (checked every generation, with
    the best solution seen)."""
    from evotorch.algorithms import PGPE, SNES

    torch.manual_seed(seed)
    np.random.seed(seed)
    problem = vecgymne(env_id, hidden, episodes, obs_norm=True)
    start = {} if center_init is None else {"center_init": center_init.to(torch.float32)}
    problem.manual_seed(seed)
    if algo == "pgpe":
        searcher = PGPE(problem, popsize=popsize, **EVOTORCH_PGPE, **start)
    elif algo == "snes":
        searcher = SNES(problem, popsize=popsize, **EVOTORCH_SNES, **start)
    else:
        raise ValueError(f"unknown EvoTorch algorithm {algo!r}")
    curve = []
    t0 = time.perf_counter()
    for gen in range(1, max_generations + 1):
        searcher.step()
        if gen % check_every:
            if time.perf_counter() - t0 > time_cap:
                break
            continue
        rec = {
            "generation": gen,
            "episodes": int(problem.episode_count),
            "env_steps": int(problem.interaction_count),
            "seconds": time.perf_counter() - t0,
        }
        for name, key in (("centre", "center"), ("best", "best")):
            sol = searcher.status[key]
            values = torch.as_tensor(sol.values if hasattr(sol, "evals") else sol).clone()
            act = evotorch_actor(problem, values, discrete)
            rec[f"test_{name}"] = gym_test_return(env_id, act, test_episodes)["test_return"]
        curve.append(rec)
        if progress is not None:
            progress(rec)
        if rec["test_centre"] >= threshold or rec["seconds"] > time_cap:
            break
    return {"curve": curve, "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------ PPO (Stable-Baselines3)
def _schedule(v: Any) -> Any:
    if isinstance(v, tuple) and v[0] == "lin":
        start = float(v[1])
        return lambda progress_remaining: progress_remaining * start
    return v


def run_ppo(env_id: str, total_steps: int, seed: int, test_episodes: int = 100) -> dict[str, Any]:
    """SB3 PPO (MlpPolicy, rl-zoo hyper-parameters) for `total_steps` environment steps, then
    its deterministic policy on the held-out episodes."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    hp = dict(PPO_ZOO[env_id])
    n_envs = hp.pop("n_envs")
    hp = {k: _schedule(v) for k, v in hp.items()}
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **hp)
    t0 = time.perf_counter()
    model.learn(total_timesteps=int(total_steps))
    seconds = time.perf_counter() - t0

    def act(obs: torch.Tensor) -> np.ndarray:
        return model.predict(obs.numpy(), deterministic=True)[0]

    out = gym_test_return(env_id, act, test_episodes)
    env.close()
    return {**out, "env_steps": int(model.num_timesteps), "seconds": seconds,
            "hparams": {k: str(v) for k, v in PPO_ZOO[env_id].items()}}  # fmt: skip


# ---------------------------------------------------------------------------------- report
LABEL = {
    "ours:pgpe": "latent-evo PGPE (direct)",
    "ours:snes": "latent-evo SNES (direct)",
    "evotorch:pgpe": "EvoTorch PGPE (VecGymNE)",
    "evotorch:snes": "EvoTorch SNES (VecGymNE)",
    # the same runs of ours continued under a longer cap (merged from a second run)
    "ours:pgpe+": "latent-evo PGPE (direct), longer cap",
    "ours:snes+": "latent-evo SNES (direct), longer cap",
    # EvoTorch with its centre started where ours starts (a PyTorch init of the policy)
    "evotorch:pgpe@init": "EvoTorch PGPE, centre at our init",
    "evotorch:snes@init": "EvoTorch SNES, centre at our init",
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
    "Where the centre curves part: EvoTorch's search starts its centre at 0 (its CartPole "
    "example's `center_init`, and VecGymNE's near-zero initial bounds): an all-zero network "
    "outputs equal logits, argmax pushes one way, and the centre scores about 9 until ClipUp's "
    "capped steps (max_speed 0.15) move it; ours starts at the policy's PyTorch initialisation "
    "(last layer scaled by 0.1). Much of the gap is this default, not the update rule: the "
    "'centre at our init' rows run EvoTorch's same settings from a PyTorch init of the policy "
    "(`center_init`; merged from a second run, see runs_provenance in rl.json). "
    "'Best seen' is EvoTorch's `status['best']` (best single-episode score so far) and our "
    "loop's incumbent (confirmed on fresh episodes); a lucky early member often generalises on "
    "CartPole, which is why that criterion is reached in a few generations and is noisy.",
    "Pendulum-v1: EvoTorch has no Pendulum example, so it runs its CartPole recommendation "
    "(above); untuned for Pendulum, which may explain part of its gap. The caps are per run (300 "
    "s or 1000 generations), so the faster library plays more episodes inside them; compare by "
    "the episodes columns (the centre at a budget every run spent). No PPO on Pendulum: our "
    "budget there is about 6 M environment steps, beyond this CPU's time for this session.",
    "PPO: Stable-Baselines3 MlpPolicy (64-64 tanh, separate value net), rl-zoo's tuned "
    "hyper-parameters, its own vectorised Gymnasium environments; a gradient reference at "
    "our budget, not a like-for-like policy.",
    "Machine: a 2-core CPU shared with two other engineers' builds and tests during the runs "
    "(1-min load averages are in the tables and rl.json); one torch thread, one benchmark "
    "process at a time, EvoTorch in-process (no ray actor). Absolute numbers are depressed and "
    "noisy under that load; the ratios come from interleaved runs in the same process.",
]


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


CRITERIA = {
    "reached": "centre or best seen",
    "centre_reached": "centre",
}


def summary(runs: dict[str, dict], key: str = "reached") -> dict[str, Any]:
    reached = [r[key] for r in runs.values() if r.get(key)]
    return {
        "solved": len(reached), "seeds": len(runs),
        "episodes": [r[key]["episodes"] if r.get(key) else None for r in runs.values()],
        "median_episodes": median([r["episodes"] for r in reached]),
        "median_env_steps": median([r["env_steps"] for r in reached]),
        "median_generations": median([r["generation"] for r in reached]),
        "median_seconds": median([r["seconds"] for r in reached]),
    }  # fmt: skip


def plot(eff: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {
        "ours:pgpe": "C0",
        "ours:snes": "C2",
        "evotorch:pgpe": "C3",
        "evotorch:snes": "C1",
        "ours:pgpe+": "C9",
        "ours:snes+": "C8",
        "evotorch:pgpe@init": "C4",
        "evotorch:snes@init": "C5",
    }
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


def _times(theirs: float, ours: float) -> str:
    r = theirs / ours
    return f"ours needs {r:.1f}x fewer" if r >= 1 else f"ours needs {1 / r:.1f}x more"


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
        for run in res.get("speed_history", []):
            if env_id in run["speed"]:
                ratios = [r["ratio_of_medians"] for row in run["speed"][env_id]["populations"].values()
                          for r in row.values()]  # fmt: skip
                extra += (f"; run started {run['started']}: {min(ratios):.2f}x to "
                          f"{max(ratios):.2f}x")  # fmt: skip
        out.append(
            f"Speed, {env_id}, P={sp['popsize']} x E={sp['episodes']}, obs. norm off: ours {span} "
            f"EvoTorch's VecGymNE steps/s (target >= 1.5x: "
            f"{'met' if lo >= 1.5 else 'missed'}){extra}."
        )
        shares = [r["forward_share"] for _, _, r in rows]
        floor = [r["forward_share_at_bmm_floor"] for _, _, r in rows]
        kinds = sorted({r.get("task_forward_kind", "vmap(functional_call)") for _, _, r in rows})
        diag = ""
        if all("us_task_forward" in r for _, _, r in rows):
            vm = [r["us_vmap_forward"] / r["us_bmm_forward"] for _, _, r in rows]
            diag = (f" A `vmap(functional_call)` forward costs {min(vm):.1f}x to {max(vm):.1f}x "
                    "the bare chain at these sizes.")  # fmt: skip
        out.append(
            f"Forward share, {env_id}: {100 * min(shares):.0f} % to {100 * max(shares):.0f} % of "
            f"our rollout with the task's forward ({', '.join(kinds)}) (target <= 25 %: "
            f"{'met' if max(shares) <= 0.25 else 'missed'}). At the cost of the same MLP as a "
            f"bare `baddbmm` + tanh chain it would be {100 * min(floor):.0f} % to "
            f"{100 * max(floor):.0f} %"
            + (f": even without framework overhead, the forward's arithmetic (P x E = "
               f"{sp['popsize'] * sp['episodes']:,} rows a step) costs more than a batched "
               "classic-control step on one CPU thread." if min(floor) > 0.25 else ".")
            + diag
        )  # fmt: skip
    for env_id, eff in res.get("efficiency", {}).items():
        for key, crit in CRITERIA.items():
            best = {}
            for lib in ("ours", "evotorch"):
                cands = [(m, summary(r, key)) for m, r in eff["runs"].items()
                         if m.startswith(lib + ":")]  # fmt: skip
                cands = [c for c in cands if c[1]["solved"]]
                if cands:
                    best[lib] = min(cands, key=lambda c: (-c[1]["solved"], c[1]["median_episodes"]))
            if len(best) < 2:
                who = "no method of either library"
                if best:
                    m, sm = next(iter(best.values()))
                    who = (f"only {LABEL.get(m, m)} ({sm['solved']}/{sm['seeds']} seeds, median "
                           f"{_fmt(sm['median_episodes'])} episodes)")  # fmt: skip
                rest = ""
                for lib, name in (("ours", "latent-evo"), ("evotorch", "EvoTorch")):
                    if lib in best:
                        continue
                    vals = [max(c["test_centre"] for c in r["curve"])
                            for mm, runs in eff["runs"].items() if mm.startswith(lib + ":")
                            for r in runs.values() if r["curve"]]  # fmt: skip
                    ends = [r["curve"][-1]["episodes"]
                            for mm, runs in eff["runs"].items() if mm.startswith(lib + ":")
                            for r in runs.values() if r["curve"]]  # fmt: skip
                    if vals:
                        rest += (f"; {name}'s best centre: {max(vals):.0f}, its runs ending at "
                                 f"{min(ends):,} to {max(ends):,} episodes")  # fmt: skip
                longer = eff.get("longer_cap")
                if longer:
                    rest += (f" (ours continued under a longer cap, {longer['time_cap']:g} s or "
                             f"{longer['max_generations']} generations: the '+' rows)")  # fmt: skip
                out.append(f"Sample efficiency, {env_id} to {eff['threshold']:g} ({crit}): "
                           f"{who} reached it within the caps ({eff.get('time_cap', '?')} s or "
                           f"{eff.get('max_generations', '?')} generations a run){rest}.")  # fmt: skip
                continue
            (mo, so), (me, se) = best["ours"], best["evotorch"]
            ok = so["solved"] >= se["solved"] and so["median_episodes"] <= se["median_episodes"]
            line = (
                f"Sample efficiency, {env_id} to {eff['threshold']:g} ({crit}): "
                f"{LABEL[mo]} {_fmt(so['median_episodes'])} episodes (median, "
                f"{so['solved']}/{so['seeds']} seeds) vs EvoTorch's best, {LABEL[me]}, "
                f"{_fmt(se['median_episodes'])} ({se['solved']}/{se['seeds']}): "
                f"{_times(se['median_episodes'], so['median_episodes'])} (target: no more than "
                f"EvoTorch's: {'met' if ok else 'missed'})"
            )
            rec = [(m, summary(r, key)) for m, r in eff["runs"].items()
                   if m.startswith("evotorch:") and "@" not in m]  # fmt: skip
            rec = [c for c in rec if c[1]["solved"]]
            if "@" in me and rec:
                mr, sr = min(rec, key=lambda c: (-c[1]["solved"], c[1]["median_episodes"]))
                line += (f"; against its recommended settings ({LABEL[mr]}, "
                         f"{_fmt(sr['median_episodes'])}): "
                         f"{_times(sr['median_episodes'], so['median_episodes'])}")  # fmt: skip
            out.append(line + ".")
    for env_id, pp in res.get("ppo", {}).items():
        for key, entry in pp.get("budgets", {}).items():
            if entry["runs"]:
                rets = [r["test_return"] for r in entry["runs"].values()]
                out.append(
                    f"PPO reference, {env_id}, at {entry['env_steps']:,} steps ({CRITERIA[key]} "
                    f"budget): median test return {median(rets):.1f} over {len(rets)} seeds."
                )
    return out


def _speed_history(res: dict[str, Any]) -> list[str]:
    """The speed tables' ratios in every run of the speed section (the load moves them)."""
    runs = [*res.get("speed_history", []), {"started": res.get("speed_started", "latest run"),
                                            "speed": res.get("speed", {})}]  # fmt: skip
    if len(runs) < 2:
        return []
    lines = ["## Speed, run to run", "",
             "The same speed section run more than once on the shared machine: ratios (ours / "
             "EvoTorch VecGymNE, medians of interleaved repeats) and forward shares per run.", "",
             "| run started | env | population | obs. norm | ratio | forward share | task's "
             "forward | load |", "|---|---|---|---|---:|---:|---|---|"]  # fmt: skip
    for run in runs:
        for env_id, sp in run["speed"].items():
            for pname, row in sp["populations"].items():
                for key, r in row.items():
                    lines.append(
                        f"| {run['started']} | {env_id} | {pname} | "
                        f"{'on' if key == 'obs_norm' else 'off'} | {r['ratio_of_medians']:.2f}x | "
                        f"{100 * r['forward_share']:.0f} % | "
                        f"{r.get('task_forward_kind', run.get('task_forward_kind', '?'))} | "
                        f"{sp['load_start']:.1f} -> "
                        f"{sp['load_end']:.1f} |"
                    )
    return [*lines, ""]


def _centre_at(curve: list[dict], episodes: int) -> float:
    """The centre's test return at the last check within `episodes` training episodes."""
    inside = [r for r in curve if r["episodes"] <= episodes]
    return inside[-1]["test_centre"] if inside else float("nan")


def _progress_table(eff: dict) -> list[str]:
    """Where the runs got to, threshold or not: the best centre test return seen, and the
    centre's test return at a budget every run spent (the fewest episodes any run ended at)."""
    runs_all = [r for runs in eff["runs"].values() for r in runs.values() if r["curve"]]
    if not runs_all or all(r.get("centre_reached") for r in runs_all):
        return []
    common = min(r["curve"][-1]["episodes"] for r in runs_all)
    lines = [f"Where the runs got to (caps: {eff.get('time_cap', '?')} s, "
             f"{eff.get('max_generations', '?')} generations a run):", "",
             "| method | best centre test return (median) | per seed (at episodes) | centre at "
             f"{common:,} episodes (median) | training episodes at the end (median) |",
             "|---|---:|---|---:|---:|"]  # fmt: skip
    for m, runs in eff["runs"].items():
        best = [
            max(r["curve"], key=lambda c: c["test_centre"]) for r in runs.values() if r["curve"]
        ]
        per = ", ".join(f"{b['test_centre']:.0f} ({b['episodes']:,})" for b in best)
        at = [_centre_at(r["curve"], common) for r in runs.values() if r["curve"]]
        ends = [r["curve"][-1]["episodes"] for r in runs.values() if r["curve"]]
        lines.append(
            f"| {LABEL.get(m, m)} | {median([b['test_centre'] for b in best]):.1f} | {per} | "
            f"{median(at):.1f} | {median(ends):,.0f} |"
        )
    return [*lines, ""]


def report(res: dict[str, Any], out: Path) -> None:
    lines = ["# RL: latent-evo vs EvoTorch (VecGymNE) and SB3 PPO", ""]
    lines += provenance_md(res["provenance"]) + [""]
    lines += ["## Against issue 30's targets", "", *[f"- {v}" for v in verdicts(res)], ""]
    for env_id, sp in res.get("speed", {}).items():
        lines += [f"## Speed: {env_id}, one rollout of P={sp['popsize']} policies x "
                  f"E={sp['episodes']} episodes", "",
                  f"Alive environment steps per second, medians of {sp['repeats']} interleaved "
                  f"repeats (load {sp['load_start']:.1f} -> {sp['load_end']:.1f}). Forward share: "
                  "our rollout's time inside the task's policy forward (target <= 25 %).", "",
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
                  "(instrumented runs), and the forward alone on `(P, E, obs)`: the task's, a "
                  "`vmap(functional_call)` of the policy, and a bare `baddbmm` + tanh chain:", "",
                  "| population | obs. norm | µs per step | µs forward in the rollout | µs env step "
                  "| task's forward (kind): µs | vmap(functional_call): µs | bmm chain: µs "
                  "| forward share at the bmm cost |",
                  "|---|---|---:|---:|---:|---|---:|---:|---:|"]  # fmt: skip
        for pname, row in sp["populations"].items():
            for key, r in row.items():
                task_fwd = (f"{r.get('task_forward_kind')}: {r['us_task_forward']:.0f}"
                            if "us_task_forward" in r else "vmap(functional_call)")  # fmt: skip
                lines.append(
                    f"| {pname} | {'on' if key == 'obs_norm' else 'off'} | {r['us_per_step']:.0f} | "
                    f"{r['us_forward_per_step']:.0f} | {r['us_env_step_per_step']:.0f} | "
                    f"{task_fwd} | {r['us_vmap_forward']:.0f} | {r['us_bmm_forward']:.0f} | "
                    f"{100 * r['forward_share_at_bmm_floor']:.0f} % |"
                )
        lines.append("")
    lines += _speed_history(res)
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
                s = summary(runs, key)
                also = median([r["also_reached"]["episodes"] for r in runs.values()
                                if r.get("also_reached")]) if key == "reached" else None  # fmt: skip
                per = ", ".join(_fmt(e) for e in s["episodes"])
                lines.append(
                    f"| {LABEL.get(m, m)} | {crit} | {s['solved']}/{s['seeds']} | "
                    f"{_fmt(s['median_episodes'])} | {per} | {_fmt(s['median_env_steps'])} | "
                    f"{_fmt(s['median_generations'])} | {_fmt(s['median_seconds'])} | {_fmt(also)} |"
                )
        lines += ["", "Wall seconds include the per-generation test evaluations (200 held-out "
                  "episodes a generation on both sides).", ""]  # fmt: skip
        lines += _progress_table(eff)
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
                f"{entry['env_steps']:,} | {per} | {median(rets):.1f} |"
            )
        lines.append("")
    lines += ["## Notes", "", *[f"- {n}" for n in NOTES], ""]
    (out / "rl.md").write_text("\n".join(lines) + "\n")
