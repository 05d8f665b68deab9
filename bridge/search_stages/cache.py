"""The detector stages' training outcomes by task key, appended to
``RUN_DIR/detector_results.jsonl`` as each training ends, so that nothing is trained twice, also
across a resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bridge.executor import Outcome

MACHINE_FAILURES = frozenset({"timeout", "crashed", "out_of_memory", "no_start"})
"""Outcome reasons that say nothing about the loss: retried once at once, not final on resume."""


class ResultCache:
    """Training outcomes by task key, appended to a JSON-lines file as each training ends."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, dict] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill: that training runs again
                if entry.get("reason") in MACHINE_FAILURES:
                    continue  # the machine's fault, in an earlier process: this one tries again
                self.entries[entry["task"]] = entry

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, outcome: Outcome, extra: dict) -> dict:
        entry = {"task": key, "result": outcome.result, "reason": outcome.reason,
                 "message": first_line(outcome.message), "seconds": outcome.seconds, **extra}
        self.entries[key] = entry
        with self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return entry


def first_line(text: str) -> str:
    """The first line of an outcome's message (its traceback can be long)."""
    return text.splitlines()[0] if text else ""
