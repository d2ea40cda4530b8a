"""The sections of a run's configuration (`EvolveConfig` in `config.py` gathers them): one
dataclass per concern, every field with a default and a comment that says what it does. Each
is checked for its own values here (`__post_init__`) or, across sections, by `EvolveConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

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
class MinibatchConfig:
    """Fresh minibatches (`fitness_batch: step`) that grow when their noise hides the search's
    progress (`latent_evo.evolution.minibatch.BatchSchedule`)."""

    #: double the batch when the incumbent's fitness varies more across batches (over `window`
    #: generations) than the members of one generation differ on the same batch
    grow: bool = False
    window: int = 5
    factor: float = 2.0
    #: the first batch size (None: the task's own); the largest (None: no bound but the data)
    size: int | None = None
    max_size: int | None = None


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
    #: what the gate compares: the task's loss, or its error rate (classification: accuracy
    #: can keep improving after cross-entropy flattens, and accuracy is what is reported)
    metric: Literal["loss", "error"] = "loss"


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
