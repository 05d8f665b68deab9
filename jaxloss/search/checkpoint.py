"""Checkpoints of a search with orbax-checkpoint, one after every generation.

A checkpoint holds the evolution state (parents, fitness, best so far), the PRNG key, the number
of completed generations, the evaluation cache and a JSON document (funnel statistics, archive,
settings) stored as bytes: only arrays, nothing pickled. Orbax writes a step to a temporary
folder and renames it when complete, so a run killed while saving (SIGKILL included) leaves the
previous step intact. On resume the newest step that restores cleanly and is consistent with
itself is used; an unreadable or inconsistent one is reported and moved aside to
``checkpoints-unusable/`` (kept for inspection, never deleted). When steps exist and none restores,
:class:`NoUsableCheckpoint` says which and why; nothing else in the run folder is touched.

Step 0 holds the state after the initial loss was measured (generation 0); step g the state after
generation g.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp

KEEP = 3


class NoUsableCheckpoint(RuntimeError):
    """Checkpoints exist and none restores; the message names each and what was wrong."""


def has_steps(run_dir: Path) -> bool:
    """Whether ``run_dir/checkpoints`` holds a saved step."""
    path = run_dir / "checkpoints"
    return path.is_dir() and any(p.name.isdigit() for p in path.iterdir())


def _manager(run_dir: Path) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        (run_dir / "checkpoints").resolve(),
        options=ocp.CheckpointManagerOptions(max_to_keep=KEEP, create=True,
                                             enable_async_checkpointing=False))


def save(run_dir: Path, generation: int, arrays: dict, document: dict) -> None:
    """Save the state after ``generation`` completed generations (the step number)."""
    text = json.dumps(document, sort_keys=True).encode()
    tree = dict(arrays)
    tree["document"] = np.frombuffer(text, np.uint8).copy()
    tree["document_sha256"] = np.frombuffer(hashlib.sha256(text).digest(), np.uint8).copy()
    tree["generation"] = np.int32(generation)
    manager = _manager(run_dir)
    manager.save(generation, args=ocp.args.StandardSave(tree), force=True)
    manager.wait_until_finished()
    manager.close()


def restore_latest(run_dir: Path, log=print) -> tuple[int, dict, dict] | None:
    """(completed generations, arrays, document) of the newest sound checkpoint; None when there
    is no checkpoint at all.

    Raises:
      NoUsableCheckpoint: there are checkpoints and none restores (each was moved aside).
    """
    path = run_dir / "checkpoints"
    if not has_steps(run_dir):
        return None
    manager = _manager(run_dir)
    problems = []
    try:
        steps = sorted(manager.all_steps(), reverse=True)
        for step in steps:
            try:
                tree = manager.restore(step, args=ocp.args.StandardRestore())
                text = np.asarray(tree.pop("document"), np.uint8).tobytes()
                digest = np.asarray(tree.pop("document_sha256"), np.uint8).tobytes()
                if hashlib.sha256(text).digest() != digest:
                    raise ValueError("its document does not match its checksum")
                if int(tree.pop("generation")) != step:
                    raise ValueError("its generation counter does not match its step")
                return step, tree, json.loads(text)
            except Exception as err:  # noqa: BLE001 - any failure means: not usable
                aside = _move_aside(run_dir, step)
                why = f"{type(err).__name__}: {str(err)[:200]}"
                problems.append(f"step {step} ({why}; moved to {aside})")
                log(f"checkpoint {step} in {path} is unusable ({why}); moved to {aside}; trying "
                    "the previous one", file=sys.stderr)
        raise NoUsableCheckpoint(f"no checkpoint in {path} restores: {'; '.join(problems)}"
                                 if problems else f"{path} holds no step orbax can list")
    finally:
        manager.close()


def _move_aside(run_dir: Path, step: int) -> Path:
    target = run_dir / "checkpoints-unusable" / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(run_dir / "checkpoints" / str(step)), str(target))
    return target
