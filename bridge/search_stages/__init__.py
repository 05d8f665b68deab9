"""The detector stages of the search (paper §3.2.3 and the proxy task), plugged into
``jaxloss.search`` through the ``jaxloss.stages`` entry point (``detector``:
``bridge.search_stages:detector_stages``, see :mod:`bridge.search_stages.plugin`).

* ``d_verify`` — the model optimization simulation: the chosen detector (Faster R-CNN for ``cls``,
  FCOS for ``cls_binary`` and ``reg`` by default) trains with the candidate loss on D_verify (one
  image per category of the training set, at least ``verify_min_images``) for ``verify_iters``
  iterations and is tested on it; a candidate whose D_verify AP is below the threshold (less
  VERIFY_SLACK, 10%, for the noise of such short trainings) is rejected (``below_threshold``). The
  threshold is the D_verify AP of the previous generation's top loss; in the first generation, that
  of the initial loss L_I (measured in generation 0).
* ``proxy`` — the proxy task: training on the proxy training set (the training set minus a random
  held-out validation subset, as the paper's 10k images) for ``proxy_epochs`` epochs (at least
  MIN_PROXY_ITERS iterations), COCO mAP (pycocotools) on the held-out subset. That mAP is the
  candidate's fitness.

The search puts a cut before each (Algorithm 1): the best ``verify_k`` by simulation score go to
D_verify, the best ``top_k`` of those that pass by D_verify AP go to the proxy task.

Every training runs in its own worker (:mod:`bridge.executor`, local processes or Ray tasks) with
a time limit. A failure of the loss (``nonfinite``: a NaN or ±inf loss, ``exploded``: a loss that
runs away past ``explode_factor`` times its first value, ``error``: the training raised) is final:
the candidate is marked failed with the reason and the search goes on. A failure of the machine
(MACHINE_FAILURES: ``timeout``, ``crashed``, ``out_of_memory``, ``no_start``) is retried once, at
once, on fresh workers; only a second failure marks the candidate failed (both reasons are in its
log record). Results are cached by the candidate's structural hash (and everything else that
decides the training) in ``RUN_DIR/detector_results.jsonl``, written as each training ends, so
nothing is trained twice, also across a resume; machine failures are kept for the record but a
resumed run trains those candidates again. A training in flight when the search is interrupted
(Ctrl-C, SIGTERM) is recorded nowhere, and ``--resume`` runs it again.

One module per job:

====================  ==========================================================================
:mod:`.settings`      the detector settings: every option with its default, its flag, its check;
                      the settings of one search resolved for the stages; the config check
:mod:`.data`          D_verify and the proxy split, written once per run
:mod:`.worker`        the worker side: one detector trained with one candidate loss
:mod:`.cache`         training outcomes by task key, on disk as each training ends
:mod:`.training`      the executor; one training per distinct function, cached and retried
:mod:`.verify`        the D_verify stage and its threshold
:mod:`.proxy`         the proxy stage (the fitness)
:mod:`.final`         the final fresh-seed re-measurement of the best losses and L_I
:mod:`.plugin`        the entry point jaxloss finds: settings, flags and the stages
====================  ==========================================================================

The names below load their module on first use, so that jaxloss can load the entry point (and
this package) while it is itself being imported, without loading the stages.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "detector_stages": "plugin", "DetectorPlugin": "plugin",
    "DetectorSettings": "settings", "DetectorSetup": "settings", "DEFAULT_CONFIG": "settings",
    "DEFAULT_TASK": "settings", "GENERATIONS": "settings", "check_detector_config": "settings",
    "SearchData": "data", "prepare_search_data": "data",
    "LOSS_SLOT": "worker", "train_candidate": "worker",
    "MACHINE_FAILURES": "cache", "ResultCache": "cache",
    "DetectorStage": "training", "make_executor": "training",
    "VERIFY_SLACK": "verify", "VerifyStage": "verify",
    "MIN_PROXY_ITERS": "proxy", "ProxyStage": "proxy",
    "remeasure": "final",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
