"""Configuration of an evolution run: nested dataclasses, one per concern, built from plain dicts
(YAML) by `latent_evo.config.build`, with a clear error naming any unknown key or wrong value by
its dotted path (`finetune.evry`, `strategy.popsize`).

Every field has a default, so `EvolveConfig()` is a valid run (direct-space CMA-ES would be too
big for a real network, so the default strategy is a GA). The YAML files in `configs/evolve/`
spell out the same tree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from latent_evo.config import build
from latent_evo.evolution.sections import (
    ConfigError,
    DecoderComponent,
    DecoderSearchConfig,
    FinetuneConfig,
    GeneratorConfig,
    InitConfig,
    MinibatchConfig,
    Mode,
    PBTConfig,
    PortfolioConfig,
    ResidualConfig,
    StrategyConfig,
    SurrogateConfig,
    SwitchConfig,
    TaskConfig,
    ValidationConfig,
    WarmupConfig,
)

__all__ = [
    "ConfigError",
    "DecoderComponent",
    "DecoderSearchConfig",
    "FinetuneConfig",
    "GeneratorConfig",
    "InitConfig",
    "MinibatchConfig",
    "Mode",
    "PBTConfig",
    "PortfolioConfig",
    "ResidualConfig",
    "StrategyConfig",
    "SurrogateConfig",
    "SwitchConfig",
    "TaskConfig",
    "ValidationConfig",
    "WarmupConfig",
    "EvolveConfig",
    "apply_override",
]


@dataclass
class EvolveConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    #: path of a pretrained compressor directory (`Compressor.from_pretrained`); None = direct;
    #: "fresh" = an untrained one that online fine-tuning trains on this run's genomes alone
    compressor: str | None = None
    #: auto = latent with a compressor, direct without
    mode: Mode = "auto"
    generations: int | None = 50
    #: budget of true fitness evaluations (stops when reached); None = no budget
    evaluations: int | None = None
    seed: int = 0
    device: str = "auto"
    #: fitness on the task's fixed batch, or on `task.batch(generation)` (a fresh minibatch;
    #: the best so far is then re-scored on each generation's batch, one evaluation each, and a
    #: challenger must also win on a second batch, two more)
    fitness_batch: Literal["fixed", "step"] = "fixed"
    #: test metrics of the best genome every k generations (0 = only at the end)
    eval_every: int = 5
    #: individuals decoded at once (bounds the decoder's memory); 0 = all
    decode_chunk: int = 0
    init: InitConfig = field(default_factory=InitConfig)
    residual: ResidualConfig = field(default_factory=ResidualConfig)
    #: mode decoder: which decoder parameters are searched with the code, and how
    decoder: DecoderSearchConfig = field(default_factory=DecoderSearchConfig)
    #: mode generator: the generator whose weights are the genome (no compressor, no zoo)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    switch: SwitchConfig = field(default_factory=SwitchConfig)
    portfolio: PortfolioConfig = field(default_factory=PortfolioConfig)
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    pbt: PBTConfig = field(default_factory=PBTConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    minibatch: MinibatchConfig = field(default_factory=MinibatchConfig)
    #: checkpoint every k generations (0 = only at the end / on a signal); CLI runs only
    checkpoint_every: int = 10

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> EvolveConfig:
        """The checks across fields, run once when a config is built (`from_dict`, the
        constructor, `dataclasses.replace`); each field's type and `Literal` choices were
        checked by the builder. The run and PBT trust a built config."""
        self._validate_decoder()
        self._validate_pbt()
        mb = self.minibatch
        if (mb.grow or mb.size is not None) and self.fitness_batch != "step":
            raise ConfigError("minibatch: needs fitness_batch: step (fresh minibatches)")
        if mb.grow and mb.size is None:
            raise ConfigError("minibatch.grow: give minibatch.size, the first batch size")
        if (
            mb.window < 2
            or not mb.factor > 1
            or any(v is not None and v < 1 for v in (mb.size, mb.max_size))
        ):
            raise ConfigError(
                f"minibatch: window >= 2, factor > 1, sizes >= 1; got {mb.window} / "
                f"{mb.factor} / {mb.size} / {mb.max_size}"
            )
        val = self.validation
        if not 0 < val.fraction < 1 or val.chunks < 2 or val.z < 0 or val.patience < 0:
            raise ConfigError(
                f"validation: fraction in (0, 1), chunks >= 2, z >= 0 and patience >= 0, got "
                f"{val.fraction} / {val.chunks} / {val.z} / {val.patience}"
            )
        if self.generations is None and self.evaluations is None:
            raise ConfigError("generations / evaluations: give at least one budget")
        for key in ("generations", "evaluations"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{key}: a budget must be >= 1, got {value}")
        for key, sc in (("strategy", self.strategy), ("switch.strategy", self.switch.strategy),
                        ("finetune.warmup.strategy", self.finetune.warmup.strategy),
                        ("portfolio.strategy", self.portfolio.strategy)):  # fmt: skip
            _validate_strategy(key, sc)
        if not 0 < self.surrogate.fraction <= 1:
            raise ConfigError(
                f"surrogate.fraction: must be in (0, 1], got {self.surrogate.fraction}"
            )
        if self.init.samples < 0:
            raise ConfigError(f"init.samples: must be >= 0, got {self.init.samples}")
        if self.init.kind in ("zoo", "network") and not self.init.path:
            raise ConfigError(f"init.path: init.kind={self.init.kind!r} needs a path")
        tensors = self.switch.tensors
        if not isinstance(tensors, list | tuple) or not all(isinstance(t, str) for t in tensors):
            raise ConfigError(
                f"switch.tensors: expected a list of glob patterns (['layers.2.*']), got {tensors!r}"
            )
        if tensors and not self.switch.enabled:
            raise ConfigError("switch.tensors: set, but switch.enabled is false (nothing uses it)")
        if self.compressor == "fresh" and not self.finetune.enabled:
            raise ConfigError(
                "compressor: fresh needs finetune.enabled (an untrained compressor learns only "
                "from the run's genomes)"
            )
        pf = self.portfolio
        if pf.enabled:
            if self.switch.enabled:
                raise ConfigError(
                    "portfolio.enabled and switch.enabled: the portfolio already moves between "
                    "latent and direct space; enable one of them"
                )
            if self.mode in ("direct", "generator"):
                raise ConfigError(f"portfolio.enabled: a {self.mode}-mode run has no latent arm")
            if not pf.direct:
                raise ConfigError("portfolio.direct: give at least one direct arm ([[]]: all)")
            if pf.probe < 1 or pf.window < 1:
                raise ConfigError(
                    f"portfolio.probe / window: must be >= 1, got {pf.probe} / {pf.window}"
                )
            if not 0 <= pf.min_share < 1:
                raise ConfigError(f"portfolio.min_share: must be in [0, 1), got {pf.min_share}")
            if pf.hysteresis < 0:
                raise ConfigError(f"portfolio.hysteresis: must be >= 0, got {pf.hysteresis}")
            if pf.relay_margin < 0:
                raise ConfigError(f"portfolio.relay_margin: must be >= 0, got {pf.relay_margin}")
        if self.finetune.enabled and self.finetune.every < 1:
            raise ConfigError("finetune.every: must be >= 1")
        return self

    def _validate_decoder(self) -> None:
        dec = self.decoder
        if self.mode != "decoder":
            if dec.components:
                raise ConfigError("decoder.components: set, but mode is not decoder")
            return
        if not dec.components:
            raise ConfigError("decoder.components: mode decoder needs at least one component")
        if self.finetune.enabled:
            raise ConfigError(
                "finetune.enabled: fine-tuning changes the decoder parameters mode decoder "
                "searches; use one or the other"
            )
        probs = [dec.latent_mutation_prob] + [c.mutation_prob for c in dec.components]
        for i, c in enumerate(dec.components):
            if not c.params:
                raise ConfigError(f"decoder.components[{i}].params: give glob patterns")
            if c.rank < 0 or not c.scale > 0:
                raise ConfigError(
                    f"decoder.components[{i}]: rank must be >= 0 and scale > 0, got "
                    f"{c.rank} / {c.scale}"
                )
        if any(not 0 <= p <= 1 for p in probs):
            raise ConfigError(f"decoder: mutation probabilities must be in [0, 1], got {probs}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def _validate_pbt(self) -> None:
        pbt = self.pbt
        if pbt.members < 2:
            raise ConfigError(f"pbt.members: needs >= 2 runs to exploit, got {pbt.members}")
        if pbt.every < 1:
            raise ConfigError(f"pbt.every: must be >= 1 generation, got {pbt.every}")
        if not 0 < pbt.fraction <= 0.5:
            raise ConfigError(f"pbt.fraction: must be in (0, 0.5], got {pbt.fraction}")
        if pbt.spread < 1:
            raise ConfigError(f"pbt.spread: must be >= 1 (a factor), got {pbt.spread}")
        if not pbt.perturb or any(not f > 0 for f in pbt.perturb):
            raise ConfigError(f"pbt.perturb: positive factors, got {pbt.perturb}")
        if not pbt.enabled:
            return
        if self.evaluations is None:
            raise ConfigError("pbt: give `evaluations`, the total budget the members share")
        if self.evaluations // pbt.members < self.strategy.popsize:
            raise ConfigError(
                f"pbt: evaluations {self.evaluations} split over {pbt.members} members leave "
                f"fewer than one generation ({self.strategy.popsize}) each"
            )
        from latent_evo.strategies import STRATEGIES

        tunable = STRATEGIES[self.strategy.name].tunable_hparams()
        for name in pbt.hparams:
            if name not in tunable:
                raise ConfigError(
                    f"pbt.hparams: {name!r} is not a positive numeric hyper-parameter of "
                    f"{self.strategy.name} (tunable: {', '.join(tunable)})"
                )

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "") -> EvolveConfig:
        """Build and validate (once); `where` (a file) prefixes every error."""
        try:
            return build(cls, d, ConfigError, where)
        except ConfigError as e:
            if where and not str(e).startswith(where):
                raise ConfigError(f"{where}: {e}") from None
            raise


def _validate_strategy(key: str, sc: StrategyConfig) -> None:
    """A strategy section: a registered name, a population, hyper-parameters it knows (the
    strategy's own dimension-free checks, `Strategy.check_hparams`)."""
    from latent_evo.strategies import STRATEGIES

    cls = STRATEGIES.get(sc.name)
    if cls is None:
        raise ConfigError(
            f"{key}.name: unknown strategy {sc.name!r}; valid: {', '.join(STRATEGIES)}"
        )
    least = max(2, cls.min_popsize)
    if sc.popsize < least:
        raise ConfigError(
            f"{key}.popsize: a population needs >= {least} members ({sc.name}), got {sc.popsize}"
        )
    try:
        cls.check_hparams(sc.hparams)
    except ValueError as e:
        raise ConfigError(f"{key}.hparams: {e}") from None


def apply_override(d: dict[str, Any], dotted: str, value: Any) -> None:
    """`apply_override(cfg, "strategy.popsize", 64)`: set a nested key in a plain dict."""
    keys = dotted.split(".")
    node = d
    for k in keys[:-1]:
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {dotted}: {k!r} is not a section")
        node = nxt
    node[keys[-1]] = value
