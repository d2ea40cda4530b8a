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

Mode = Literal["auto", "latent", "residual", "direct", "decoder", "generator"]


class ConfigError(ValueError):
    """A config key or value is wrong; the message names it by its dotted path."""


@dataclass
class TaskConfig:
    name: str = "mnist1d-mlp-tiny"
    #: overrides passed to `get_task(name, **overrides)` (hidden, fitness_batch_size, seed, data...)
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class StrategyConfig:
    name: str = "ga"
    popsize: int = 32
    #: strategy hyper-parameters (`default_hparams` of the class)
    hparams: dict[str, Any] = field(default_factory=dict)


@dataclass
class InitConfig:
    #: prior: `compressor.sample`; zoo: encodings of the top-k of a zoo (`path`); network: the
    #: encoding of one network (`path`, a safetensors state dict); task: fresh task inits
    #: (encoded in latent modes); zeros: the strategy's own default (mean 0).
    kind: Literal["prior", "zoo", "network", "task", "zeros"] = "task"
    path: str | None = None
    top_k: int = 8
    #: prior: evaluate this many samples and start from the best (0: start from the first
    #: sample, unevaluated); a bad first draw is what a short search cannot recover from
    samples: int = 0
    #: network, latent mode: when the decoder's copy of the network (decode(encode(net))) is
    #: worse by more than this fraction of its fitness, search around the network itself
    #: (mode residual, base = the network) instead of its decoded image; None: never
    lossy_tol: float | None = 0.01


@dataclass
class ResidualConfig:
    #: genome = base + alpha * (decode(z_anchor + u) - decode(z_anchor))
    alpha: float = 1.0
    #: every k generations the base moves to the best genome found (0 = never)
    rebase_every: int = 5
    #: the first base: `init` (best of the initial population) or a safetensors network path
    base: str | None = None


@dataclass
class GeneratorConfig:
    """The generator of `mode: generator` (`latent_evo.evolution.generator`): a coordinate-query
    MLP whose weights are the genome."""

    # width of the generator MLP's hidden layers
    hidden: int = 16
    # hidden layers of the MLP (1 = features -> hidden -> value); the default fits a generator
    # in a quarter of the smallest registry MLP (mnist1d-mlp-tiny, 1,642 params)
    layers: int = 1
    # Fourier frequencies per coordinate axis (sin and cos each), geometric from half a period
    # over the axis to the Nyquist rate of its index, so neighbouring units can differ
    n_freqs: int = 4
    # size of the learned embedding of each target tensor (tells the shared MLP which tensor)
    embed: int = 4
    # tanh | relu | gelu | silu: gelu beat tanh by backprop on mnist1d-mlp-tiny (30% vs 24%)
    activation: str = "gelu"
    # norm weights/biases are emitted as init (1 / 0) + norm_scale * MLP: small, optional changes
    norm_scale: float = 0.1
    # standardise the MLP's output per group before scaling (none | tensor | row; row: each output
    # unit's fan-in, as weight standardisation does; 1-d tensors per tensor). A smooth generator
    # emits weights that share a mean across a tensor's rows; on mnist1d-mlp (100 hidden units)
    # those coherent sums made the first network's loss 15 instead of 2.3 and Adam collapsed to
    # chance, where "row" starts at the init's 2.3 and learns
    standardize: str = "row"
    # bound on the floats of one intermediate (P x chunk x hidden): coordinates go in chunks
    max_chunk_elements: int = 2**22
    # seeds `init_theta()` when no generator is passed
    seed: int = 0
    # from_genomes: Adam steps and learning rate of the (approximate) fit of theta to genomes
    fit_steps: int = 300
    fit_lr: float = 1e-2

    def __post_init__(self) -> None:
        for key in ("hidden", "layers", "n_freqs", "max_chunk_elements"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"generator.{key} must be >= 1, got {getattr(self, key)!r}")
        if self.embed < 0 or self.fit_steps < 0:
            raise ConfigError("generator.embed and generator.fit_steps must be >= 0")
        choices = {
            "activation": ("tanh", "relu", "gelu", "silu"),
            "standardize": ("none", "tensor", "row"),
        }
        for key, ok in choices.items():
            if getattr(self, key) not in ok:
                raise ConfigError(f"generator.{key} {getattr(self, key)!r} is not one of {ok}")
        if not self.norm_scale > 0 or not self.fit_lr > 0:
            raise ConfigError("generator.norm_scale and generator.fit_lr must be > 0")


@dataclass
class DecoderComponent:
    """Decoder parameters searched beside the latent code (`mode: decoder`)."""

    #: glob patterns of the compressor's parameter names (`["out.*"]`: the attention
    #: compressor's output head; `["decoder.4.bias"]`: the MLP autoencoder's output bias)
    params: list[str] = field(default_factory=list)
    #: 0: every entry is searched; r > 0: a matrix W (out, in) moves by B @ A with B (out, r)
    #: searched and A a fixed random (r, in) projection (a low-rank adapter, LoRA-FA style)
    rank: int = 0
    #: the step size of this component relative to the latent code's: a unit step of the
    #: strategy moves these parameters by `scale`
    scale: float = 0.05
    #: GA: probability that a child's mutation touches this component
    mutation_prob: float = 0.5


@dataclass
class DecoderSearchConfig:
    components: list[DecoderComponent] = field(default_factory=list)
    #: GA: probability that a child's mutation touches its latent code
    latent_mutation_prob: float = 1.0


@dataclass
class SwitchConfig:
    """Automatic hybrid switching between latent and direct space."""

    enabled: bool = False
    #: a switch happens when best fitness improved by less than `tol` over `window` generations
    window: int = 10
    tol: float = 1e-3
    #: direct-space strategy used after a switch (dim = genome size, or the size of `tensors`)
    strategy: StrategyConfig = field(
        default_factory=lambda: StrategyConfig("openai_es", 32, {"sigma_init": 0.02, "lr": 0.01})
    )
    #: glob patterns of tensor names the direct phase searches (["layers.2.*"]: the output
    #: layer of a 2-hidden-layer MLP); the other weights stay as in the best genome at the
    #: switch (a fine-tuning warm-up population, while active, still searches them all).
    #: Empty = the whole genome.
    tensors: list[str] = field(default_factory=list)
    #: switch back to latent space when the direct phase stalls too
    back: bool = False
    #: always spend the last N generations in direct space (hybrid refinement; needs generations)
    final_direct_generations: int = 0


@dataclass
class PortfolioConfig:
    """Evaluations shared between latent and direct space by the progress each lately makes
    (`latent_evo.evolution.portfolio`): the search never keeps paying for a space that does not
    help. Needs a compressor (mode latent or residual); replaces `switch`."""

    enabled: bool = False
    #: the direct arms, each a list of glob patterns of tensor names ([] = the whole genome):
    #: [[]] one whole-genome arm; [[], ["layers.2.*"]] also one over the output layer
    direct: list[list[str]] = field(default_factory=lambda: [[]])
    #: the direct arms' strategy (each arm its own instance and random stream)
    strategy: StrategyConfig = field(
        default_factory=lambda: StrategyConfig("openai_es", 32, {"sigma_init": 0.02, "lr": 0.01})
    )
    #: generations each arm gets in turn at the start, before any is preferred
    probe: int = 3
    #: arms are scored on their gains in the last `window` generations; an arm with less than
    #: `min_share` of them is played next (the most the portfolio spends on a useless arm)
    window: int = 40
    min_share: float = 0.05
    #: a direct arm restarts from the run's best genome only when that beats the arm's own best
    #: by more than this fraction (its first play always starts there)
    relay_margin: float = 0.05
    #: the arm playing now keeps playing unless another's score is (1 + hysteresis) x its own
    hysteresis: float = 1.0


@dataclass
class SurrogateConfig:
    """Pre-screening by the compressor's fitness head: the strategy's population is the pool."""

    enabled: bool = False
    #: fraction of the pool that is truly evaluated (top of the head's ranking)
    fraction: float = 0.25


@dataclass
class WarmupConfig:
    """Two-phase schedule: a direct-space population feeds the archive until the compressor's
    loss on the archive falls below `threshold`, then the run goes latent-only."""

    enabled: bool = False
    threshold: float = 0.1
    strategy: StrategyConfig = field(
        default_factory=lambda: StrategyConfig("openai_es", 16, {"sigma_init": 0.02, "lr": 0.01})
    )


@dataclass
class FinetuneConfig:
    enabled: bool = False
    every: int = 10
    steps: int = 10
    lr: float = 1e-4
    batch_size: int = 32
    archive_size: int = 1024
    #: gradient steps refining each re-encoded code against its old phenotype (0 = encoder only)
    reencode_steps: int = 20
    reencode_lr: float = 0.05
    #: weights of the combined loss (see `latent_evo.evolution.finetune.finetune_loss`)
    fitness_weight: float = 1.0
    head_weight: float = 0.1
    warmup: WarmupConfig = field(default_factory=WarmupConfig)
    #: fine-tune the very compressor object passed in (default: a copy, the caller's is kept)
    in_place: bool = False


@dataclass
class ValidationConfig:
    """A validation set the search never sees gates the reported network
    (`latent_evo.evolution.incumbent.ValidationGate`): the best network on training fitness
    replaces the reported one only if it is better on validation by more than the noise."""

    enabled: bool = False
    #: fraction of the task's training data (or episodes) held out
    fraction: float = 0.1
    #: disjoint parts of the validation set: a challenger's loss on each is paired with the
    #: reported network's on the same part
    chunks: int = 8
    #: a challenger wins when its mean paired difference is below -z standard errors
    z: float = 1.0
    #: stop when the reported network has not changed for this many generations (0: never)
    patience: int = 0


@dataclass
class PBTConfig:
    """Population-based training of the strategy's hyper-parameters (`latent_evo.evolution.pbt`):
    `members` runs share the `evaluations` budget; every `every` generations the worst copy the
    best's state and perturb the tuned values. `latent-evo evolve --pbt N` enables it."""

    enabled: bool = False
    members: int = 4
    every: int = 10
    #: strategy hyper-parameters to tune (positive numbers; a step size also rescales live σ)
    hparams: list[str] = field(default_factory=lambda: ["sigma_init", "lr"])
    #: members 1..N-1 start at the configured value times a log-uniform factor within x/÷ spread
    spread: float = 4.0
    #: explore: each tuned value is multiplied by one of these factors after a copy (Jaderberg
    #: et al. used 0.8 / 1.2 over long trainings; a few thousand evaluations need larger moves)
    perturb: list[float] = field(default_factory=lambda: [0.5, 2.0])
    #: the worst fraction copies one of the best fraction
    fraction: float = 0.25


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
