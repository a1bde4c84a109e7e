"""Run folders shared by the render trainers: checkpoint folders written whole or not at all,
the newest few kept, and a metrics log cut back to the checkpoint a run resumes from.

A checkpoint is ``<out>/checkpoints/step_NNNNNNN/`` holding at least ``trainer.json``; it is
written as ``.step_NNNNNNN.tmp`` and renamed when complete, so a killed run leaves either the
previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from worldline.io import atomic_write


def begin(ckpt_dir: Path, step: int) -> Path:
    """A fresh temporary folder for the checkpoint of ``step``."""
    tmp = ckpt_dir / f".step_{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def commit(tmp: Path, ckpt_dir: Path, step: int, keep: int) -> Path:
    """Rename the completed ``tmp`` into place and delete all but the newest ``keep`` checkpoints."""
    final = ckpt_dir / f"step_{step:07d}"
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in _done(ckpt_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(ckpt_dir: Path) -> Path | None:
    done = _done(ckpt_dir)
    return done[-1] if done else None


def clear_stale(ckpt_dir: Path) -> None:
    """Remove the temporary folders of saves a kill interrupted."""
    for stale in ckpt_dir.glob(".step_*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def trim_log(log_path: Path, step: int) -> None:
    """Drop the lines of a JSONL metrics log written after ``step`` (and lines torn by a kill)."""
    if not log_path.exists():
        return
    kept = [ln for ln in log_path.read_text().splitlines() if (s := _step_of(ln)) is not None and s <= step]
    with atomic_write(log_path, "w") as f:
        f.write("".join(ln + "\n" for ln in kept))


def _done(ckpt_dir: Path) -> list[Path]:
    return sorted(p for p in ckpt_dir.glob("step_*") if (p / "trainer.json").is_file())


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None
