"""`EpisodicTask`: a policy + an environment; fitness = minus the mean return of a population.

Why one batched rollout: a population of P policies x E episodes is B = P * E environments,
stepped as ONE batch (`latent_evo.envs.make_env`), with ONE vmapped `functional_call` of the
policy per step over the P members (`rollout.batched_rollout`). Cost per step is then a few
tensor ops whatever P is; a per-member loop would pay Python and environment overhead P times.

    task = EpisodicTask("gym:CartPole-v1", episodes=4)          # or get_task("gym:CartPole-v1")
    f = task.fitness_genomes(genomes, task.batch(generation))    # (P, n) -> (P,), lower is better

What RL users expect of an ES library, and where it lives:
  * common random numbers: `batch(step)` is the E episode seeds of a generation (a pure function
    of the task's seed and `step`), and every member plays those same E episodes; test seeds
    (`evaluate`) are disjoint from every training seed.
  * observation normalisation (`obsnorm.RunningObsNorm`): statistics shared by the population,
    frozen within a generation, merged when the next generation's `batch(step)` is drawn (with
    fixed seeds, `batch=None`, at each fitness call); frozen in `evaluate`; checkpointed
    (`state_dict`), so a resumed run is bit-identical.
  * counters: `episodes` and `env_steps` (steps of environments still in their episode) of
    every fitness rollout; `evaluate` rollouts are counted apart, as `test_episodes` and
    `test_env_steps`, so the training budget is what it says.
  * torchrun: the loop hands each rank a slice of the population; every fitness call gathers
    its observation sums and counters from all ranks (one collective), so every rank keeps the
    same statistics, and a run's counters equal a single process's (a rollout every rank runs
    in full, the re-scored incumbent, counts once; `rollout.reduce_over_ranks`).
  * validation (`ValidatedTask`, `validation: enabled` in a config): `hold_out` sets aside a
    part of the training seed range; `validation_losses` scores members on those episodes.
  * per-member physical parameters: `set_member_params({name: (P,)})` -- member p's E episodes
    run variant p (policy zoos train one variant per member).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from latent_evo.genome import GenomeSpec
from latent_evo.models.policy import check_policy, policy_for_spaces, population_forward_fn
from latent_evo.tasks.base import reinitialised, seeded_genomes
from latent_evo.tasks.obsnorm import RunningObsNorm
from latent_evo.tasks.rollout import (
    NonFiniteEnvError,
    batched_rollout,
    distributed,
    reduce_over_ranks,
)

__all__ = ["EpisodicTask", "NonFiniteEnvError", "gym_task"]

TRAIN_SEED_LIMIT = 2**30  # training episodes use seeds in [0, 2^30) ...
TEST_SEED_BASE = 2**30  # ... held-out test episodes start here: the two never meet
_ACTIONS = ("argmax", "sample")


class EpisodicTask:
    """See the module docstring. `env`: a Gymnasium id (with or without "gym:") or a factory
    `num_envs -> gymnasium.vector.VectorEnv`; `policy`: an `nn.Module` mapping `(N, obs_dim)`
    to logits `(N, n)` (Discrete) or actions `(N, act_dim)` (Box), default a tanh MLP with
    `hidden` units built from the spaces; `max_steps`: an episode-length cap below the
    environment's own time limit; `env_params`: one variant `{name: float}` for every episode;
    `env_kwargs`: passed to `make_env` (e.g. `dtype=torch.float64`)."""

    def __init__(
        self,
        env: str | Callable[[int], Any],
        policy: nn.Module | None = None,
        episodes: int = 4,
        max_steps: int | None = None,
        action: str = "argmax",
        obs_norm: bool = True,
        env_params: dict[str, float] | None = None,
        seed: int = 0,
        test_episodes: int = 100,
        device: str | torch.device | None = None,
        name: str | None = None,
        hidden: Sequence[int] = (32, 32),
        backend: str = "auto",
        env_kwargs: dict[str, Any] | None = None,
    ):
        self.env_source = env[4:] if isinstance(env, str) and env.startswith("gym:") else env
        self.env_id = env_label(self.env_source)
        self.name = name or f"gym:{self.env_id}"
        if int(episodes) < 1 or int(test_episodes) < 1:
            raise ValueError(
                f"{self.name}: episodes and test_episodes must be >= 1, got {episodes}, "
                f"{test_episodes}"
            )
        if action not in _ACTIONS:
            raise ValueError(f"{self.name}: action must be one of {list(_ACTIONS)}, got {action!r}")
        if max_steps is not None and int(max_steps) < 1:
            raise ValueError(f"{self.name}: max_steps must be >= 1 or None, got {max_steps}")
        self.episodes, self.test_episodes = int(episodes), int(test_episodes)
        self.max_steps = None if max_steps is None else int(max_steps)
        self.action, self.seed, self.backend = action, int(seed), backend
        self.env_params = {k: float(v) for k, v in (env_params or {}).items()}
        self.env_kwargs = dict(env_kwargs or {})
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._envs: dict[int, Any] = {}
        self._member_variant_envs: set[int] = set()
        probe = self._env(1)  # unknown ids, unsupported spaces, bad params: raised here
        self.observation_space, self.action_space = probe.observation_space, probe.action_space
        caps = [h for h in (self.max_steps, probe.max_episode_steps) if h]
        if not caps:
            raise ValueError(
                f"environment {self.env_id!r} has no time limit: pass max_steps to cap its episodes"
            )
        self.horizon = min(caps)
        self.discrete = type(self.action_space).__name__ == "Discrete"
        if action == "sample" and not self.discrete:
            raise ValueError(f"{self.name}: action='sample' needs a Discrete action space")
        if policy is None:
            try:
                policy = policy_for_spaces(self.observation_space, self.action_space, hidden)
            except ValueError as e:
                raise ValueError(f"environment {self.env_id!r}: {e}") from e
        self.model = policy.to(self.device).eval()
        self.policy = self.model
        self.spec = GenomeSpec.from_module(self.model)
        self.obs_dim = int(self.observation_space.shape[0])
        self.out_dim = (
            int(self.action_space.n) if self.discrete else int(self.action_space.shape[0])
        )
        self._forward = population_forward_fn(self.model)
        params = self.spec.unflatten(self.genome()[None])  # {name: (1, *shape)}
        check_policy(
            self._forward, params, self.obs_dim, self.out_dim, self.action_space, self.name
        )
        self.obs_norm = RunningObsNorm(self.obs_dim, self.device) if obs_norm else None
        self.member_params: dict[str, Tensor] | None = None
        gen = torch.Generator().manual_seed(self.seed)
        self.train_limit = TRAIN_SEED_LIMIT  # lowered by hold_out
        self.fixed_seeds = torch.randint(0, self.train_limit, (self.episodes,), generator=gen)
        self.test_seeds = TEST_SEED_BASE + torch.arange(self.test_episodes)
        self.val_seeds: Tensor | None = None  # set by hold_out
        self._stats_step = -1  # the generation whose statistics are committed
        self._count = dict.fromkeys(
            ("episodes", "env_steps", "test_episodes", "test_env_steps", "validation_episodes",
             "validation_env_steps"), 0,
        )  # fmt: skip

    # ------------------------------------------------------------------ environments
    def _env(self, num_envs: int) -> Any:
        """B environments, built once per B (fitness, re-scores, tests differ in B)."""
        if num_envs not in self._envs:
            from latent_evo.envs import make_env

            try:
                self._envs[num_envs] = make_env(
                    self.env_source, num_envs, device=self.device, params=self.env_params or None,
                    max_episode_steps=self.max_steps, backend=self.backend, **self.env_kwargs,
                )  # fmt: skip
            except (ValueError, TypeError) as e:
                hint = " (EpisodicTask: max_steps=N)" if "max_episode_steps" in str(e) else ""
                if self.env_id in str(e) and not hint:
                    raise
                raise ValueError(f"environment {self.env_id!r}: {e}{hint}") from e
            except Exception as e:  # gymnasium.error.NameNotFound, a user factory's own error
                raise ValueError(f"environment {self.env_id!r} cannot be built: {e}") from e
        return self._envs[num_envs]

    def set_member_params(self, params: dict[str, Tensor] | None) -> None:
        """Per-member physical parameters `{name: (P,)}` (None: back to `env_params` for all);
        member p's E episodes run variant p, for populations of exactly P members."""
        if params is None:
            self.member_params = None
            return
        sizes = {k: torch.as_tensor(v).numel() for k, v in params.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(
                f"{self.name}: member parameters need one value per member each, got {sizes}"
            )
        env = self._env(1)
        if not hasattr(env, "set_params"):
            raise ValueError(f"environment {self.env_id!r} takes no per-environment parameters")
        defaults = env.param_defaults() if hasattr(env, "param_defaults") else {}
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise ValueError(
                f"environment {self.env_id!r}: unknown parameter(s) {unknown}; "
                f"valid: {sorted(defaults)}"
            )
        self.member_params = {
            k: torch.as_tensor(v, dtype=torch.float64).reshape(-1).to(self.device)
            for k, v in params.items()
        }

    def _variant(self, env: Any, population: int, variants: dict[str, Tensor] | None) -> None:
        """Give each of the P * E environments its member's variant `variants {name: (P,)}`
        (member-major layout); None: `env_params` for all."""
        B = env.num_envs
        if variants is None:
            if B in self._member_variant_envs:  # its last rollout ran per-member variants
                defaults = env.param_defaults()
                env.set_params({k: self.env_params.get(k, v) for k, v in defaults.items()})
                self._member_variant_envs.discard(B)
            return
        size = next(iter(variants.values())).numel()
        if size != population:
            raise ValueError(
                f"{self.name}: member parameters are set for {size} members, this rollout has "
                f"{population} (set_member_params(None) for one variant for all)"
            )
        reps = B // population
        env.set_params({k: v.repeat_interleave(reps) for k, v in variants.items()})  # (B,)
        self._member_variant_envs.add(B)

    # ------------------------------------------------------------------ rollout
    def rollout(
        self,
        genomes: Tensor,
        seeds: Tensor,
        sums: Tensor | None = None,
        variants: dict[str, Tensor] | None | str = "members",
    ) -> tuple[Tensor, Tensor]:
        """`(P, n)` genomes x `(E,)` seeds -> returns and lengths, each `(P, E)`; member p plays
        every seed. `sums` (`RunningObsNorm.new_sums()`): accumulates the observations seen.
        `variants`: physical parameters `{name: (P,)}`, default those of `set_member_params`."""
        P = genomes.shape[0]
        env = self._env(P * seeds.numel())
        self._variant(env, P, self.member_params if isinstance(variants, str) else variants)
        params = self.spec.unflatten(genomes.to(self.device))  # {name: (P, *shape)}
        return batched_rollout(
            env, self._forward, params, seeds, self.horizon, self.discrete, self.obs_norm, sums,
            sample=self.action == "sample", env_id=self.env_id,
        )  # fmt: skip

    # ------------------------------------------------------------------ the Task protocol
    def to(self, device: str | torch.device) -> EpisodicTask:
        self.device = torch.device(device)
        self.model.to(self.device)
        if self.obs_norm is not None:
            self.obs_norm.to(self.device)
        if self.member_params is not None:
            self.member_params = {k: v.to(self.device) for k, v in self.member_params.items()}
        self._envs, self._member_variant_envs = {}, set()
        return self

    def batch(self, step_or_generator: int | torch.Generator, size: int | None = None) -> Tensor:
        """The episode seeds `(E,)` of generation `step` (or drawn from a generator), in
        [0, 2^30) less what `hold_out` set aside; E = `size` (default `episodes`). A new `step`
        also starts a new generation of observation statistics."""
        n = self.episodes if size is None else int(size)
        if isinstance(step_or_generator, torch.Generator):
            return torch.randint(0, self.train_limit, (n,), generator=step_or_generator)
        step = int(step_or_generator)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step + 1)
        if step != self._stats_step and self.obs_norm is not None:
            self.obs_norm.commit()
        self._stats_step = step
        return torch.randint(0, self.train_limit, (n,), generator=gen)

    def fitness_genomes(self, genomes: Tensor, batch: Any = None) -> Tensor:
        """`(P, n)` -> `(P,)` minus the mean return over the E episodes of `batch` (the seeds;
        None: the task's fixed seeds, and a new generation of observation statistics)."""
        if batch is None:
            seeds = self.fixed_seeds
            if self.obs_norm is not None:
                self.obs_norm.commit()
        else:
            seeds = checked_seeds(batch, self.name)
        norm = self.obs_norm
        sums = norm.new_sums() if norm is not None else None
        with torch.no_grad():
            returns, lengths = self.rollout(genomes, seeds, sums)
        work = torch.tensor([returns.numel(), int(lengths.sum())], dtype=torch.float64)
        if distributed():  # every rank's observations and work (see the module docstring)
            work, sums = reduce_over_ranks(genomes, work, sums, self.device)
        if norm is not None:
            norm.add_pending(sums)
        self._count["episodes"] += int(work[0])
        self._count["env_steps"] += int(work[1])
        return (-returns.mean(1)).float()  # (P,)

    def evaluate(self, genome: Tensor, member: int | None = None) -> dict[str, float]:
        """Mean return over `test_episodes` held-out seeds under frozen statistics, in the
        variant of `member` (see `set_member_params`), or in `env_params` when None."""
        variants = None
        if member is not None:
            if self.member_params is None:
                raise ValueError(f"{self.name}: evaluate(member=...) needs set_member_params first")
            variants = {k: v[int(member)].reshape(1) for k, v in self.member_params.items()}
        with torch.no_grad():
            returns, lengths = self.rollout(genome.reshape(1, -1), self.test_seeds, None, variants)
        self._count["test_episodes"] += returns.numel()
        self._count["test_env_steps"] += int(lengths.sum())
        return {
            "test_return": float(returns.mean()),
            "test_return_std": float(returns.std()) if returns.numel() > 1 else 0.0,
            "test_episode_length": float(lengths.double().mean()),
        }

    # ------------------------------------------------------------------ validation
    def hold_out(self, fraction: float, seed: int) -> None:
        """Episode seeds are unlimited, so holding out takes a `fraction` of the training SEED
        RANGE: training draws from the rest, and `test_episodes` validation seeds (the test
        set's size) are drawn, with `seed`, from the part set aside. Validation, training and
        test seeds never meet; a second call re-splits the full range."""
        if not 0 < fraction < 1:
            raise ValueError(f"{self.name}: validation fraction must be in (0, 1), got {fraction}")
        self.train_limit = round((1 - fraction) * TRAIN_SEED_LIMIT)
        gen = torch.Generator().manual_seed(int(seed))
        span = TRAIN_SEED_LIMIT - self.train_limit
        val = torch.randint(0, span, (self.test_episodes,), generator=gen)
        self.val_seeds = self.train_limit + val
        gen = torch.Generator().manual_seed(self.seed)
        self.fixed_seeds = torch.randint(0, self.train_limit, (self.episodes,), generator=gen)

    def validation_losses(self, genomes: Tensor, chunks: int, metric: str = "loss") -> Tensor:
        """`(P, n)` -> `(P, chunks)`: minus the mean return on each of `chunks` disjoint parts
        of the validation seeds, the same for every member, statistics frozen (as `evaluate`);
        counted as `validation_episodes` / `validation_env_steps`."""
        if self.val_seeds is None:
            raise ValueError(f"task {self.name!r}: no validation set; call hold_out first")
        if metric != "loss":
            raise ValueError(f"task {self.name!r}: validation metric {metric!r}; an episodic "
                             "task validates on its return (metric: loss)")  # fmt: skip
        with torch.no_grad():
            returns, lengths = self.rollout(genomes, self.val_seeds)  # (P, V) each
        self._count["validation_episodes"] += returns.numel()
        self._count["validation_env_steps"] += int(lengths.sum())
        parts = returns.tensor_split(chunks, dim=1)  # chunks x (P, ~V / chunks)
        return -torch.stack([part.mean(1) for part in parts], dim=1).float()  # (P, chunks)

    def genome(self) -> Tensor:
        return self.spec.flatten(self.model.state_dict())

    def init_genomes(self, population: int, generator: torch.Generator | None = None) -> Tensor:
        """`(P, n)` of the policy's own initialisation, each under a seed drawn from `generator`."""
        build = lambda: reinitialised(copy.deepcopy(self.model).cpu())  # noqa: E731
        return seeded_genomes(self.spec, build, population, generator).to(self.device)

    def counters(self) -> dict[str, int]:
        return dict(self._count)

    def state_dict(self) -> dict[str, Tensor]:
        """Observation statistics, counters and the committed generation, as tensors."""
        out = {f"count.{k}": torch.tensor(v, dtype=torch.int64) for k, v in self._count.items()}
        out["stats_step"] = torch.tensor(self._stats_step, dtype=torch.int64)
        if self.obs_norm is not None:
            out.update({f"obs_norm.{k}": v.cpu() for k, v in self.obs_norm.state_dict().items()})
        return out

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        for k in self._count:
            if f"count.{k}" in tensors:
                self._count[k] = int(tensors[f"count.{k}"])
        if "stats_step" in tensors:
            self._stats_step = int(tensors["stats_step"])
        if self.obs_norm is not None:
            norm = {
                k[len("obs_norm.") :]: v for k, v in tensors.items() if k.startswith("obs_norm.")
            }
            self.obs_norm.load_state_dict(norm)


def env_label(env: Any) -> str:
    """A name for messages: the Gymnasium id, or the factory's name."""
    if isinstance(env, str):
        return env
    return getattr(env, "__name__", None) or type(env).__name__


def checked_seeds(batch: Any, name: str) -> Tensor:
    """A batch is the episode seeds: a 1-d sequence of non-negative integers."""
    seeds = torch.as_tensor(batch)
    if (
        seeds.dim() != 1
        or seeds.numel() < 1
        or seeds.dtype.is_floating_point
        or seeds.dtype == torch.bool
    ):
        raise ValueError(f"{name}: a batch is a 1-d tensor of integer episode seeds, got {batch!r}")
    if int(seeds.min()) < 0:
        raise ValueError(f"{name}: episode seeds must be >= 0, got {int(seeds.min())}")
    return seeds.to(torch.int64)


def gym_task(name: str, **overrides: Any) -> EpisodicTask:
    """`get_task("gym:<id>", **overrides)`: overrides are `EpisodicTask` arguments, checked by
    name so that a typo in a config names itself and the valid ones."""
    import inspect

    valid = sorted(set(inspect.signature(EpisodicTask.__init__).parameters) - {"self", "env"})
    bad = sorted(set(overrides) - set(valid))
    if bad:
        raise ValueError(
            f"unknown override(s) {bad} for task {name!r}; valid overrides are: {valid}"
        )
    if "hidden" in overrides:
        overrides["hidden"] = tuple(overrides["hidden"])
    return EpisodicTask(name, **overrides)
