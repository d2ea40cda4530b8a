"""`PyTorchModelHubMixin`, stricter: safetensors only, versioned configs, errors that name the file.

The stock mixin falls back to `pytorch_model.bin` (a pickle) when `model.safetensors` is missing
and loads weights non-strictly. A compressor must never execute code on load, and a missing,
truncated or mismatched file must say so plainly.
"""

import dataclasses
import json
import os
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin, constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError

from latent_evo.integrity import sha256_file, verify

#: bumped when a saved config can no longer be read by older code
#: 2: `prior_mean` / `prior_chol` buffers (the fitted prior of `sample`)
#: 3: the attention `Compressor`'s residual decoder (per-token bank, base genome); attention
#:    compressors of formats 1-2 refuse to load with a clear error, MLP autoencoders still load
FORMAT_VERSION = 3
#: buffers added in format 2: a format-1 file without them keeps the module's defaults
OPTIONAL_KEYS = frozenset({"prior_mean", "prior_chol"})
WEIGHTS_NAME = constants.SAFETENSORS_SINGLE_FILE  # "model.safetensors"
CHECKSUMS_NAME = "checksums.json"  # {"model.safetensors": sha256}, written beside it


class CompressorFormatError(ValueError):
    """A saved compressor cannot be loaded: newer format, unknown keys, bad or missing weights."""


def _resolve(model_id: str, filename: str, **download_kwargs) -> Path:
    if os.path.isdir(model_id):
        path = Path(model_id) / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; a saved compressor needs {filename}")
        return path
    try:
        return Path(hf_hub_download(repo_id=model_id, filename=filename, **download_kwargs))
    except EntryNotFoundError as e:
        raise FileNotFoundError(f"{model_id}: the repo has no {filename} ({e})") from e


class SafeHubMixin(PyTorchModelHubMixin):
    def _save_pretrained(self, save_directory) -> None:
        """model.safetensors, plus its sha256 in checksums.json (verified on every load)."""
        super()._save_pretrained(save_directory)
        weights = Path(save_directory) / WEIGHTS_NAME
        sums = {WEIGHTS_NAME: sha256_file(weights)}
        (Path(save_directory) / CHECKSUMS_NAME).write_text(json.dumps(sums, indent=1) + "\n")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, revision=None, **kwargs):
        model_id = str(pretrained_model_name_or_path)
        download = {
            k: kwargs[k]
            for k in ("cache_dir", "force_download", "token", "local_files_only")
            if k in kwargs
        }
        config_path = _resolve(model_id, constants.CONFIG_NAME, revision=revision, **download)
        cls._check_config_file(config_path)
        return super().from_pretrained(pretrained_model_name_or_path, revision=revision, **kwargs)

    @classmethod
    def _check_config_file(cls, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CompressorFormatError(f"{path}: not a readable JSON config ({e})") from e
        cfg = data.get("config", data) if isinstance(data, dict) else None
        if not isinstance(cfg, dict):
            raise CompressorFormatError(f"{path}: expected a JSON object of config fields")
        version = cfg.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CompressorFormatError(
                f"{path}: written in compressor format {version!r}, but this latent-evo reads formats "
                f"up to {FORMAT_VERSION}; upgrade latent-evo to load it"
            )
        if dataclasses.is_dataclass(getattr(cls, "config_class", None)):
            from latent_evo.config import build

            try:  # unknown keys and wrong types, named by key and file (`num_latents: "16"`)
                build(cls.config_class, cfg, CompressorFormatError, str(path))
            except CompressorFormatError:
                raise
            except Exception as e:  # the config's own checks (range, divisibility, ...)
                raise CompressorFormatError(f"{path}: invalid config: {e}") from None

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id,
        revision,
        cache_dir,
        force_download,
        local_files_only,
        token,
        map_location="cpu",
        strict=True,
        **model_kwargs,
    ):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        weights = _resolve(
            model_id,
            WEIGHTS_NAME,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            token=token,
            local_files_only=local_files_only,
        )
        try:  # folders saved before checksums existed (and the Hub without one) still load
            sums_path = _resolve(
                model_id, CHECKSUMS_NAME, revision=revision, cache_dir=cache_dir,
                force_download=force_download, token=token, local_files_only=local_files_only,
            )  # fmt: skip
        except FileNotFoundError:
            sums_path = None
        if sums_path is not None:
            try:
                expected = json.loads(Path(sums_path).read_text()).get(WEIGHTS_NAME)
            except (OSError, ValueError, AttributeError) as e:  # ValueError: bad JSON or UTF-8
                raise CompressorFormatError(
                    f"{sums_path}: not a readable checksum file ({e})"
                ) from e
            if expected is not None and not isinstance(expected, str):
                raise CompressorFormatError(f"{sums_path}: the checksum is not a string")
        try:
            state = load_file(weights, device=str(map_location))
        except (SafetensorError, OSError, ValueError) as e:
            raise CompressorFormatError(
                f"{weights}: corrupt or truncated safetensors file ({e})"
            ) from e
        if sums_path is not None:  # after the header parse, whose message says more
            verify(weights, expected, CompressorFormatError)
        allow_non_finite = bool(model_kwargs.pop("allow_non_finite", False))
        non_finite = [
            k
            for k, v in state.items()
            if v.is_floating_point() and not bool(torch.isfinite(v).all())
        ]
        if non_finite and not allow_non_finite:
            raise CompressorFormatError(
                f"{weights}: tensor {non_finite[0]!r} holds NaN or inf"
                f"{f' (and {len(non_finite) - 1} more)' if len(non_finite) > 1 else ''}: the file is "
                "corrupt or was saved from a diverged run (allow_non_finite=True loads it anyway)"
            )
        try:
            model = cls(**model_kwargs)
        except Exception as e:  # a config that passed its checks but cannot build a model
            raise CompressorFormatError(
                f"{weights.parent}: cannot build {cls.__name__} ({e})"
            ) from e
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if k not in OPTIONAL_KEYS]
        if missing or unexpected:
            raise CompressorFormatError(
                f"{weights}: weights do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
        bad = [k for k, v in model.state_dict().items() if k in state and v.shape != state[k].shape]
        if bad:
            raise CompressorFormatError(f"{weights}: tensors with the wrong shape: {bad[:5]}")
        return model
