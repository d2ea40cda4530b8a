"""Shared pieces of the benchmarks: provenance (machine, command, commit), timing, peak memory."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results"


# ---------------------------------------------------------------------------------- provenance
def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(argv: list[str], script: str) -> dict[str, Any]:
    def git(*a: str) -> str:
        try:
            return subprocess.run(
                ["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "command": f"{script} {' '.join(argv)}".strip(),
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "dirty_files_of_others": bool(git("status", "--porcelain", "--untracked-files=no")),
        "machine": f"{os.cpu_count()}-core CPU ({cpu_name()})"
        + (f", GPU {gpu}" if gpu else ", no GPU"),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_avg_start": os.getloadavg()[0],
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def _merged(merged: Any) -> str:
    """Other runs merged into a report: their commands and commits (or a note as written)."""
    if not isinstance(merged, list):
        return str(merged)
    return "; ".join(f"`{m['command']}` (commit `{m['commit']}`, started {m['started']})"
                     for m in merged)  # fmt: skip


def provenance_md(prov: dict[str, Any]) -> list[str]:
    return [
        f"- command: `{prov['command']}`",
        f"- commit: `{prov['commit']}` (working tree shared with other engineers)",
        f"- machine: {prov['machine']}; torch {prov['torch']} with "
        f"`torch.set_num_threads({prov['torch_threads']})`, Python {prov['python']}",
        *([f"- merged: {_merged(prov['merged'])}"] if "merged" in prov else []),
        *(
            [f"- tables re-rendered from the JSON by `{prov['rendered_by']}`"]
            if "rendered_by" in prov
            else []
        ),
        f"- started {prov['started']}; 1-min load average {prov['load_avg_start']:.1f} at start, "
        f"{prov.get('load_avg_end', float('nan')):.1f} at end",
    ]


def median_time(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up: allocator, vmap tracing, decoder query cache
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class PeakRSS:
    """Peak resident-set growth (bytes) over the block, sampled every 2 ms from /proc (CPU);
    on CUDA, `torch.cuda.max_memory_allocated` growth instead."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return 0

    def __enter__(self) -> PeakRSS:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        self.base = self._rss()
        self._stop = threading.Event()
        self._max = self.base

        def sample() -> None:
            while not self._stop.is_set():
                self._max = max(self._max, self._rss())
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self._max, self._rss()) - self.base
