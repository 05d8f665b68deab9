"""The compilation cache on disk: where it goes, what it keeps, and that a second process loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxloss.engine import compile_cache

ROOT = Path(__file__).resolve().parents[2]

# A fresh process that turns the cache on as the search does, compiles one program, and says
# whether it was loaded from the cache.
_PROGRAM = """
import json, sys
import jax, jax.numpy as jnp
from jaxloss.engine.compile_cache import use_compile_cache
hits = []
jax.monitoring.register_event_listener(
    lambda event, **kw: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None)
folder = use_compile_cache(sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # cache even a fast compile
f = jax.jit(lambda a: jnp.cumsum(jnp.sin(a) * 3.0) / 7.0)
value = float(f(jnp.arange(1000.0))[-1])
print(json.dumps({"folder": folder, "hits": len(hits), "value": value}))
"""


def _run_fresh(folder: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", _PROGRAM, str(folder)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    folder = tmp_path / "cache"
    first = _run_fresh(folder)
    assert first["folder"] == str(folder) and first["hits"] == 0
    written = sorted(p.name for p in folder.iterdir())
    assert written, "the first process wrote nothing to the cache"
    second = _run_fresh(folder)
    assert second["hits"] >= 1 and second["value"] == first["value"]
    assert sorted(p.name for p in folder.iterdir()) == written  # loaded, not compiled again


def test_the_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("JAXLOSS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.default_folder() == tmp_path / "xdg" / "jaxloss" / "jax"
    monkeypatch.setenv("JAXLOSS_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache.default_folder() == tmp_path / "mine" / "jax"
    monkeypatch.delenv("JAXLOSS_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert compile_cache.default_folder() == Path.home() / ".cache" / "jaxloss" / "jax"


def test_a_cache_the_process_already_has_is_kept(tmp_path):
    # the test suite sets its own cache (conftest.py); turning the cache on keeps that one
    before = compile_cache.current_folder()
    assert before
    assert compile_cache.use_compile_cache(tmp_path / "other") == before
    assert compile_cache.current_folder() == before and not (tmp_path / "other").exists()


def test_a_folder_that_cannot_be_written_is_an_error_naming_it(tmp_path, monkeypatch):
    import jax

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setattr(compile_cache, "current_folder", lambda: None)  # as in a fresh process
    before = jax.config.jax_compilation_cache_dir
    with pytest.raises(OSError, match="a-file/cache cannot be written to"):
        compile_cache.use_compile_cache(blocker / "cache")
    assert jax.config.jax_compilation_cache_dir == before  # nothing changed
