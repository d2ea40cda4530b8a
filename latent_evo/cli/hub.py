"""`latent-evo hub push RUN_DIR org/name` and `latent-evo hub pull org/name [--dest DIR]`."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from latent_evo.compressor import hub
from latent_evo.compressor.mixin import CHECKSUMS_NAME, WEIGHTS_NAME
from latent_evo.integrity import sha256_file


def _compressor_folder(run_dir: Path) -> Path:
    """A pretraining run keeps its export in `<run>/version_N/compressor/` (the newest N wins);
    a version folder or a bare export folder works too."""
    versions = sorted(
        run_dir.glob("version_*/compressor"), key=lambda p: int(p.parent.name.split("_")[-1])
    )
    for cand in (run_dir, run_dir / "compressor", *reversed(versions)):
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    raise FileNotFoundError(
        f"{run_dir}: found no compressor (config.json + model.safetensors) here, in "
        f"{run_dir / 'compressor'} or in {run_dir}/version_*/compressor"
    )


def _write_half(src: Path, dest: Path) -> str:
    """`src`'s tensors at float16 (integer tensors as they are) into `dest`; returns its sha256.
    Halves a bundle; loading widens them back (`load_state_dict`, `GenomeSpec.flatten`)."""
    from safetensors.torch import load_file, save_file

    from latent_evo.integrity import sha256_file

    try:
        state = load_file(str(src))
    except Exception as e:  # SafetensorError, OSError: name the file before writing anything
        raise ValueError(f"{src}: not a readable safetensors file ({e})") from None
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    bad = [k for k, v in half.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise ValueError(f"{src}: tensor {bad[0]!r} does not fit in float16 (overflows to inf)")
    save_file({k: v.contiguous() for k, v in half.items()}, str(dest))
    return sha256_file(dest)


def export(
    run_dir: Path,
    dest: Path,
    repo_id: str | None = None,
    half: bool = False,
    base_weights: Path | None = None,
) -> Path:
    """Copy a run's compressor (weights, config, pretraining record) to `dest` with its card:
    the folder that is bundled with the package and pushed to the Hub. `half` stores the weights
    at float16; `base_weights` (a low-rank compressor's base network) is stored beside them as
    `base.safetensors` (float16 with `half`), its hash in `checksums.json`."""
    src = _compressor_folder(run_dir)
    if base_weights is not None and not base_weights.is_file():
        raise FileNotFoundError(f"--base-weights: no file at {base_weights}")
    dest.mkdir(parents=True, exist_ok=True)
    for name in (
        "config.json",
        "model.safetensors",
        hub.PRETRAINING_FILE,
        hub.METRICS_FILE,
        hub.PROVENANCE_FILE,
    ):
        if (src / name).is_file():
            shutil.copyfile(src / name, dest / name)
    sums = {}
    if (src / CHECKSUMS_NAME).is_file():
        shutil.copyfile(src / CHECKSUMS_NAME, dest / CHECKSUMS_NAME)
        sums = json.loads((dest / CHECKSUMS_NAME).read_text())
    if half:
        sums[WEIGHTS_NAME] = _write_half(src / WEIGHTS_NAME, dest / WEIGHTS_NAME)
    if base_weights is not None:
        if half:
            sums[hub.BASE_WEIGHTS_FILE] = _write_half(base_weights, dest / hub.BASE_WEIGHTS_FILE)
        else:
            shutil.copyfile(base_weights, dest / hub.BASE_WEIGHTS_FILE)
            sums[hub.BASE_WEIGHTS_FILE] = sha256_file(dest / hub.BASE_WEIGHTS_FILE)
    if sums:
        (dest / CHECKSUMS_NAME).write_text(json.dumps(sums, indent=1) + "\n")
    (dest / hub.CARD_FILE).write_text(hub.model_card(dest, repo_id))
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="latent-evo hub", description=__doc__)
    sub = p.add_subparsers(dest="action", required=True)
    push = sub.add_parser("push", help="upload a pretrained compressor (run dir or export folder)")
    push.add_argument("run_dir", type=Path)
    push.add_argument("repo_id")
    push.add_argument("--private", action="store_true")
    pull = sub.add_parser("pull", help="download a compressor repo")
    pull.add_argument("repo_id")
    pull.add_argument(
        "--dest", type=Path, default=None, help="folder to download into (default: HF cache)"
    )
    pull.add_argument("--revision", default=None)
    exp = sub.add_parser("export", help="copy a run's compressor + model card into a folder")
    exp.add_argument("run_dir", type=Path)
    exp.add_argument("dest", type=Path)
    exp.add_argument("--repo-id", default=None, help="repo id to name in the card")
    exp.add_argument("--half", action="store_true", help="store the weights at float16")
    exp.add_argument("--base-weights", type=Path, default=None,
                     help="a low-rank compressor's base network (safetensors), bundled beside it")  # fmt: skip
    card = sub.add_parser("card", help="print the model card a push would write")
    card.add_argument("run_dir", type=Path)
    card.add_argument("--repo-id", default=None)
    args = p.parse_args(argv)
    try:
        if args.action == "push":
            print(hub.push(_compressor_folder(args.run_dir), args.repo_id, private=args.private))
        elif args.action == "export":
            print(export(args.run_dir, args.dest, args.repo_id, args.half, args.base_weights))
        elif args.action == "pull":
            print(hub.pull(args.repo_id, args.dest, revision=args.revision))
        else:
            print(hub.model_card(_compressor_folder(args.run_dir), args.repo_id))
    except (FileNotFoundError, ValueError) as e:
        print(f"latent-evo hub: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
