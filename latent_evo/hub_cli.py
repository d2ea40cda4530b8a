"""`latent-evo hub push RUN_DIR org/name` and `latent-evo hub pull org/name [--dest DIR]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from latent_evo import hub


def _compressor_folder(run_dir: Path) -> Path:
    """A pretraining run keeps its export in `compressor/`; a bare export folder works too."""
    for cand in (run_dir, run_dir / "compressor"):
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    raise FileNotFoundError(
        f"{run_dir}: found no compressor (config.json + model.safetensors) here or in {run_dir / 'compressor'}"
    )


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
    card = sub.add_parser("card", help="print the model card a push would write")
    card.add_argument("run_dir", type=Path)
    card.add_argument("--repo-id", default=None)
    args = p.parse_args(argv)
    try:
        if args.action == "push":
            print(hub.push(_compressor_folder(args.run_dir), args.repo_id, private=args.private))
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
