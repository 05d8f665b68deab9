"""Checkpoints of a search with orbax-checkpoint, one after every generation.

A checkpoint holds the evolution state (parents, fitness, best so far), the PRNG key, the number
of completed generations, the evaluation cache and a JSON document (funnel statistics, archive,
settings) stored as bytes: only arrays, nothing pickled. Orbax writes a step to a temporary
folder and renames it when complete, so a run killed while saving (SIGKILL included) leaves the
previous step intact. On resume the newest step that restores cleanly and is consistent with
itself is used; an unreadable or inconsistent one is reported and moved aside to
``checkpoints-unusable/`` (kept for inspection, never deleted).
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
    """(completed generations, arrays, document) of the newest sound checkpoint, or None."""
    path = run_dir / "checkpoints"
    if not path.is_dir():
        return None
    manager = _manager(run_dir)
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
                log(f"checkpoint {step} in {path} is unusable ({type(err).__name__}: "
                    f"{str(err)[:200]}); moved to {aside}; trying the previous one",
                    file=sys.stderr)
        return None
    finally:
        manager.close()


def _move_aside(run_dir: Path, step: int) -> Path:
    target = run_dir / "checkpoints-unusable" / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(run_dir / "checkpoints" / str(step)), str(target))
    return target
