"""The PyTorch eager baseline of the benchmarks: a loss graph walked op by op with plain torch
operators, one candidate at a time, as a straightforward DEAP + PyTorch implementation does.

Plain ``torch.abs`` / ``torch.clamp`` (not ``bridge``'s tie-exact versions, which cost extra
kernels to match JAX's derivatives at exact ties), torch's own vectorised ``sin``, ``cos`` and
``atan`` (not the polynomials of ``jaxloss.engine.trig``, several kernels each in eager mode), and no
input checking: the fastest honest
eager evaluation, so that the speed-ups measured against it are not inflated.

Two ways to give it n cores, both timed by the benchmarks: one process with
``torch.set_num_threads(n)`` (:func:`check_loop`, :func:`values_loop`), and n processes of one
thread each, pinned to one core each, sharing the candidates (:func:`in_processes`), as a DEAP
process pool would. At a few thousand points the first splits only some kernels over its threads
(exp, log, sin, tanh, erf were split at 2,048 elements with torch 2.14; additions and
multiplications were not), and each split costs a hand-over between threads; the second keeps every
core busy with whole candidates. The benchmarks time both and compare jaxloss with the faster.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import torch

from bridge.namespace import TORCH
from jaxloss.space import branches, ops
from jaxloss.space.branches import per_class_flags

PLAIN = SimpleNamespace(**dict(vars(TORCH), abs=torch.abs,
                               minimum=lambda a, bound: torch.clamp(a, max=bound),
                               maximum=lambda a, bound: torch.clamp(a, min=bound),
                               sin=torch.sin, cos=torch.cos, arctan_unit=torch.atan))


class EagerLoss:
    """Per-sample values of one loss from torch tensors (the inputs of jaxloss.evaluate)."""

    def __init__(self, loss):
        self.graph = loss.graph
        self.branch = branches.get(loss.branch)
        self.per_class = per_class_flags(loss.graph, loss.branch)[-1]

    def __call__(self, **inputs: torch.Tensor) -> torch.Tensor:
        like = inputs["x"]
        shape = like.shape if self.branch.class_axis else like.shape + (1,)
        leaves = {ops.code(n): (t.unsqueeze(-1) if t.dim() == 1 else t).expand(shape)
                  for n, t in inputs.items()}
        values = []
        for code, lhs, rhs in self.graph:
            spec = ops.OPS[code]
            if spec.arity == 0:
                values.append(leaves[code] if code in leaves else
                              torch.full(shape, ops.CONSTANTS[code], dtype=like.dtype))
            elif spec.arity == 1:
                values.append(spec.fn(PLAIN, values[lhs]))
            else:
                values.append(spec.fn(PLAIN, values[lhs], values[rhs]))
        out = values[-1]
        return PLAIN.sum_last(out)[..., 0] if self.per_class else out[..., 0]


WARMUP = 20
"""Candidates evaluated once, untimed, before a timed loop (torch's first calls allocate)."""


def check_loop(losses, inputs: dict, branch: str, *, keep_values: bool = False,
               ready=None) -> dict:
    """The full checks of ``losses`` one by one, as a DEAP + PyTorch implementation does: the graph
    walked with plain torch operators on the check grid's points, ``torch.autograd.grad`` for
    dL/dx, the verdict from the same measures and tolerances in NumPy
    (``jaxloss.filters.checks.verdict_from_values``). The first :data:`WARMUP` candidates run once
    untimed first.

    Returns ``seconds`` (the timed loop), ``reasons`` (one per loss), ``points``, and with
    ``keep_values`` the per-sample ``values`` [len(losses), N] (float32; kept outside the timing).
    ``ready``, if given, is called after the warm-up, right before the timing starts.
    """
    from jaxloss.filters.checks import verdict_from_values

    x0 = torch.from_numpy(inputs["x"])
    rest = {k: torch.from_numpy(v) for k, v in inputs.items() if k != "x"}
    modules = [EagerLoss(loss) for loss in losses]

    def one(m):
        x = x0.clone().requires_grad_(True)
        values = m(x=x, **rest)
        if values.requires_grad:
            (grad,) = torch.autograd.grad(values.sum(), x)
        else:
            grad = torch.zeros_like(x)
        values = values.detach().numpy()
        return values, verdict_from_values(values, grad.numpy(), branch)[0]

    for m in modules[:WARMUP]:
        one(m)
    if ready is not None:
        ready()
    reasons, kept = [], []
    start = time.perf_counter()
    for m in modules:
        values, reason = one(m)
        reasons.append(reason)
        if keep_values:
            kept.append(values)
    seconds = time.perf_counter() - start
    out = {"seconds": seconds, "start": start, "end": start + seconds, "reasons": reasons,
           "points": int(x0.shape[0])}
    if keep_values:
        out["values"] = np.stack(kept) if kept else np.zeros((0, x0.shape[0]), np.float32)
    return out


def values_loop(losses, inputs: dict, *, keep_values: bool = False, ready=None) -> dict:
    """The per-sample values of ``losses`` one by one under ``torch.no_grad`` (values only). The
    first :data:`WARMUP` candidates run once untimed first. Returns ``seconds``, ``points`` and,
    with ``keep_values``, ``values`` [len(losses), N] (kept outside the timing: the outputs of the
    timed loop, converted after it). ``ready``, if given, is called right before the timing."""
    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
    modules = [EagerLoss(loss) for loss in losses]
    outputs = []
    with torch.no_grad():
        for m in modules[:WARMUP]:
            m(**tensors)
        if ready is not None:
            ready()
        start = time.perf_counter()
        for m in modules:
            value = m(**tensors)
            if keep_values:
                outputs.append(value)
        seconds = time.perf_counter() - start
    n = int(next(iter(tensors.values())).shape[0])
    out = {"seconds": seconds, "start": start, "end": start + seconds, "points": n}
    if keep_values:
        out["values"] = (torch.stack(outputs).numpy() if outputs
                         else np.zeros((0, n), np.float32))
    return out


def in_processes(kind: str, pop, inputs: dict, cpus: list[int], *, branch: str | None = None,
                 keep_values: bool = False, timeout_s: float = 3600.0) -> dict:
    """:func:`check_loop` (``kind="checks"``) or :func:`values_loop` (``kind="values"``) on
    ``len(cpus)`` processes of one torch thread each, process k pinned to ``cpus[k]`` and given
    candidates k, k + P, k + 2P, ... of ``pop``: PyTorch eager on the same cores as an engine that
    spreads over them (one process with ``torch.set_num_threads(n)`` splits only some kernels
    over its threads at a few thousand points: see the module docstring). The processes build
    their modules and warm up, wait for each other, then run; ``seconds`` is from the first start
    to the last end of a timed loop (process start-up and imports excluded, as the other engines'
    compilation is).

    Returns ``seconds``, ``processes``, ``points``, per-process ``process_seconds``, and (in the
    order of ``pop``) ``reasons`` for checks, ``values`` [len(pop), N] with ``keep_values``.
    """
    import multiprocessing as mp
    import os
    import queue as queues

    P = len(cpus)
    ctx = mp.get_context("spawn")  # no fork: the parent runs JAX's threads
    barrier, results = ctx.Barrier(P), ctx.Queue()
    genomes = pop.numpy()
    shares = [np.arange(k, len(pop), P) for k in range(P)]
    saved = os.environ.get("JAX_PLATFORMS")
    os.environ["JAX_PLATFORMS"] = "cpu"  # the workers must not claim an accelerator
    try:
        workers = [ctx.Process(target=_worker, daemon=True,
                               args=(kind, genomes[shares[k]], inputs, cpus[k], branch,
                                     keep_values, barrier, results, k))
                   for k in range(P)]
        for w in workers:
            w.start()
    finally:
        if saved is None:
            os.environ.pop("JAX_PLATFORMS", None)
        else:
            os.environ["JAX_PLATFORMS"] = saved
    got, deadline = {}, time.monotonic() + timeout_s
    while len(got) < P:
        try:
            k, out = results.get(timeout=2.0)
            got[k] = out
            if "error" in out:
                for w in workers:
                    w.terminate()
                raise RuntimeError(f"PyTorch eager on {P} processes: {out['error']}")
        except queues.Empty:
            dead = [w for w in workers if w.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for w in workers:
                    w.terminate()
                raise RuntimeError(f"PyTorch eager on {P} processes: "
                                   + (f"a worker exited with {dead[0].exitcode}" if dead
                                      else f"no result after {timeout_s:.0f} s"))
    for w in workers:
        w.join()
    ran = [out for out in got.values() if out["n"]]
    seconds = (max(o["end"] for o in ran) - min(o["start"] for o in ran)) if ran else 0.0
    result = {"seconds": seconds, "processes": P, "points": got[0]["points"],
              "process_seconds": [got[k]["seconds"] for k in range(P)]}
    if kind == "checks":
        reasons = [None] * len(pop)
        for k in range(P):
            for i, r in zip(shares[k], got[k]["reasons"]):
                reasons[i] = r
        result["reasons"] = reasons
    if keep_values:
        values = np.zeros((len(pop), result["points"]), np.float32)
        for k in range(P):
            values[shares[k]] = got[k]["values"]
        result["values"] = values
    return result


def _worker(kind, genomes, inputs, cpu, branch, keep_values, barrier, results, k):
    import os

    try:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, [cpu])
        torch.set_num_threads(1)
        losses = genomes.losses()
        if kind == "checks":
            out = check_loop(losses, inputs, branch, keep_values=keep_values, ready=barrier.wait)
        else:
            out = values_loop(losses, inputs, keep_values=keep_values, ready=barrier.wait)
        out["n"] = len(losses)
        results.put((k, out))
    except BaseException as error:  # reported to the parent, which stops the benchmark
        barrier.abort()  # the others stop waiting
        results.put((k, {"error": f"{type(error).__name__}: {error}"}))
