"""The mini optimization simulation: every candidate trains a small model, all in one compiled call.

Beyond the paper's filters, and cheap enough to run on every survivor of the property checks: each
candidate loss trains its own small model for a fixed number of full-batch gradient steps on a
synthetic, detection-like task, and is scored on held-out data. Candidates train side by side: one
compiled call, the loss and its derivatives evaluated by the batched engine with each candidate's
own predictions as its inputs (``own`` leaves), the model gradients by the chain rule.

Tasks (fixed, seeded):

* ``cls_binary`` — dense one-stage classification: 1,024 training anchors with 8 features, 6%
  positives (class imbalance of a dense detector), positives' IoU w in [0.4, 1] growing with how
  typical the anchor is, w = 1 on negatives; a linear scorer with FCOS's prior bias (π = 0.01),
  the α balance (0.25 / 0.75) outside the formula and the loss normalised by the number of
  positives, as in the release. Score: average precision on 2,048 test anchors.
* ``cls`` — two-stage RoI classification: 3 foreground classes + background (75% background as the
  RoI sampler gives), IoU w in [0.5, 1] for foreground RoIs and 1 for background; a linear softmax
  classifier, loss averaged over RoIs. Score: mean AP over the foreground classes.
* ``reg`` — box refinement: proposals jittered around their ground-truth boxes (sides 8 to 256 px),
  features that encode the true offsets with noise; a linear regressor predicts (dx, dy, dw, dh)
  decoded as MMDetection's DeltaXYWH coder does; i, u, e in pixels with ε = 1e-7. Score: mean IoU
  on test proposals.

A candidate *learns* when its score closes at least LEARN_FRACTION of the gap between the untrained
model and the same model trained with the branch's reference loss (BCE, CE, IoU loss); a candidate
whose loss or gradient goes non-finite during training has diverged. Either way it is rejected as
``not_learning``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss.engine import batched
from jaxloss.engine.inputs import leaf_table
from jaxloss.genome.population import Population, as_population, check_valid, from_losses
from jaxloss.space import boxes, branches

LEARN_FRACTION = 0.5
REFERENCE = {"cls_binary": "BCE", "cls": "CE", "reg": "IoU"}


@dataclass(frozen=True)
class SimTask:
    """A synthetic task: features, targets, and how long and how fast to train.

    Training is normalised gradient descent (each step moves the parameters by ``lr`` times a
    cosine decay, in the direction of the gradient): the gradient's direction decides whether a
    loss teaches the model, not its scale, which a detector's loss weight would absorb.
    """

    branch: str
    train: dict
    test: dict
    steps: int
    lr: float
    num_classes: int = 1


def _binary_task(seed: int = 0, dim: int = 8) -> SimTask:
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)

    def split(n):
        y = (rng.random(n) < 0.06).astype(np.float32)
        phi = rng.normal(size=(n, dim))
        typical = rng.random(n)
        phi += (y * (0.8 + 1.6 * typical))[:, None] * direction
        w = np.where(y > 0, 0.4 + 0.6 * typical, 1.0)
        return {"phi": phi.astype(np.float32), "y": y, "w": w.astype(np.float32)}

    return SimTask("cls_binary", split(1024), split(2048), steps=60, lr=0.3)


def _softmax_task(seed: int = 0, dim: int = 8, classes: int = 4) -> SimTask:
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(classes, dim)) * 1.2
    means[0] = 0.0

    def split(n):
        label = np.where(rng.random(n) < 0.75, 0, rng.integers(1, classes, n))
        phi = rng.normal(size=(n, dim)) + means[label]
        w = np.where(label > 0, rng.uniform(0.5, 1.0, n), 1.0)
        return {"phi": phi.astype(np.float32), "y": np.eye(classes, dtype=np.float32)[label],
                "w": w.astype(np.float32)}

    return SimTask("cls", split(512), split(1024), steps=60, lr=0.3, num_classes=classes)


def _box_task(seed: int = 0, dim: int = 8) -> SimTask:
    rng = np.random.default_rng(seed)

    def split(n):
        side = np.exp(rng.uniform(np.log(8), np.log(256), (n, 2)))
        center = rng.uniform(0, 512, (n, 2))
        gt = np.concatenate([center - side / 2, center + side / 2], 1)
        offset = rng.normal(0, 0.25, (n, 4))  # true (dx, dy, log dw, log dh) of gt vs proposal
        pw, ph = side[:, 0] / np.exp(offset[:, 2]), side[:, 1] / np.exp(offset[:, 3])
        pcx, pcy = center[:, 0] - offset[:, 0] * pw, center[:, 1] - offset[:, 1] * ph
        proposal = np.stack([pcx - pw / 2, pcy - ph / 2, pcx + pw / 2, pcy + ph / 2], 1)
        phi = np.concatenate([offset + rng.normal(0, 0.1, (n, 4)), rng.normal(size=(n, dim - 4))],
                             1)
        return {"phi": phi.astype(np.float32), "proposal": proposal.astype(np.float32),
                "gt": gt.astype(np.float32)}

    return SimTask("reg", split(512), split(1024), steps=60, lr=0.15)


@functools.lru_cache(maxsize=None)
def task(branch: str, seed: int = 0) -> SimTask:
    """The simulation task of a branch (see the module docstring); the search uses seed 0, other
    seeds give equally built tasks for measuring how much a score depends on the data."""
    return {"cls_binary": _binary_task, "cls": _softmax_task, "reg": _box_task}[
        branches.get(branch).name](seed)


# ---------------------------------------------------------------------------------------------
# scores
# ---------------------------------------------------------------------------------------------

def average_precision(scores, labels):
    """AP of ranking by ``scores`` [P, M] against binary ``labels`` [M] (ties in index order)."""
    order = jnp.argsort(-scores, axis=1, stable=True)
    hits = labels[order]
    precision = jnp.cumsum(hits, axis=1) / jnp.arange(1, scores.shape[1] + 1)
    return jnp.sum(precision * hits, axis=1) / jnp.maximum(labels.sum(), 1.0)


def decode(proposal, deltas):
    """MMDetection DeltaXYWHBBoxCoder.decode with unit means/stds: [.., 4] boxes from deltas."""
    pw, ph = proposal[..., 2] - proposal[..., 0], proposal[..., 3] - proposal[..., 1]
    pcx, pcy = proposal[..., 0] + pw / 2, proposal[..., 1] + ph / 2
    dw = jnp.clip(deltas[..., 2], -4.0, 4.0)
    dh = jnp.clip(deltas[..., 3], -4.0, 4.0)
    w, h = pw * jnp.exp(dw), ph * jnp.exp(dh)
    cx, cy = pcx + deltas[..., 0] * pw, pcy + deltas[..., 1] * ph
    return jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def areas(pred, gt):
    """(i, u, e) [..., 3] of box pairs in pixels (:func:`jaxloss.space.boxes.areas`)."""
    return jnp.stack(boxes.areas(pred, gt, jnp), -1)


def _normalized(grad):
    """Each candidate's gradient [P, ...] scaled to unit norm (zero stays zero)."""
    norm = jnp.sqrt(jnp.sum(grad * grad, axis=tuple(range(1, grad.ndim)), keepdims=True))
    return grad / jnp.maximum(norm, 1e-30)


def _step_sizes(t: "SimTask"):
    """Cosine-decayed step sizes [steps] of normalised gradient descent."""
    k = jnp.arange(t.steps, dtype=jnp.float32)
    return t.lr * 0.5 * (1.0 + jnp.cos(jnp.pi * k / t.steps))


# ---------------------------------------------------------------------------------------------
# training, one compiled call per (branch, population shape)
# ---------------------------------------------------------------------------------------------

def _run(genomes, own_values, own_directions, shared, *, branch, block, chunk, num_classes, own):
    """Values and derivatives of every candidate's loss at its own inputs.

    Returns values [P, N] and derivatives [T, P, N] along each of the T directions in
    ``own_directions`` [T, n_own, S] (the same direction for every candidate)."""
    zeros = jnp.zeros_like(shared)
    values = None
    derivs = []
    for t in range(own_directions.shape[0]):
        tangents = jnp.broadcast_to(own_directions[t], own_values.shape)
        v, d = batched.evaluate_population(
            genomes, shared, zeros, own_values, tangents, chunk=chunk,
            num_classes=num_classes, block=block, reduce=_values_and_tangents, own=own,
            tangent_inputs=own)
        values = v if values is None else values
        derivs.append(d)
    return values, jnp.stack(derivs)


def _values_and_tangents(values, tangents):
    return values, tangents


def _shared_leaves(branch: str, data: dict) -> np.ndarray:
    """The shared leaf table (labels, IoUs, constants) of a split; own inputs get zero rows."""
    spec = branches.get(branch)
    if branch == "reg":
        n = data["phi"].shape[0]
        dummy = {k: np.zeros(n, np.float32) for k in ("i", "u", "e")}
        return leaf_table(branch, dummy).values
    x = np.zeros_like(data["y"])
    return leaf_table(spec.name, {"x": x, "y": data["y"], "w": data["w"]}).values


@functools.partial(jax.jit, static_argnames=("block", "chunk", "seed"))
def _train_and_score(genomes: Population, *, block: int, chunk: int, seed: int = 0):
    """Train every candidate's model and score it. Returns (score [P], diverged [P] bool)."""
    branch = genomes.branch
    t = task(branch, seed)
    shared = jnp.asarray(_shared_leaves(branch, t.train))
    own = ("i", "u", "e") if branch == "reg" else ("x",)

    def derivatives(own_values, directions):
        return _run(genomes, own_values, directions, shared, branch=branch, block=block,
                    chunk=chunk, num_classes=t.num_classes, own=own)[1]

    return train_and_score(derivatives, len(genomes), branch=branch, seed=seed)


def train_and_score(derivatives, P: int, *, branch: str, seed: int = 0):
    """Train P models side by side on the branch's task and score them (traceable; call inside a
    jit). Returns (score [P], diverged [P] bool).

    ``derivatives(own_values, directions)`` gives each candidate loss's derivatives [T, P, N] at
    its own inputs ``own_values`` [P, n_own, S] along each of the T directions
    ``directions`` [T, n_own, S] (own inputs: x for classification, flattened over classes for
    ``cls``; i, u, e for ``reg``); N is the number of training samples.
    """
    t = task(branch, seed)
    phi = jnp.asarray(t.train["phi"])
    M, D = phi.shape

    if branch == "cls_binary":
        y = jnp.asarray(t.train["y"])
        alpha = jnp.where(y > 0, 0.25, 0.75) / jnp.maximum(y.sum(), 1.0)
        directions = jnp.ones((1, 1, M), jnp.float32)
        prior = -np.log((1 - 0.01) / 0.01)

        def step(carry, lr):
            theta, bias, bad = carry
            logits = theta @ phi.T + bias[:, None]
            d = derivatives(logits[:, None, :], directions)
            g = d[0] * alpha
            bad = bad | ~jnp.all(jnp.isfinite(g), axis=1)
            g = jnp.where(jnp.isfinite(g), g, 0.0)
            grad = _normalized(jnp.concatenate([g @ phi, g.sum(1, keepdims=True)], 1))
            return (theta - lr * grad[:, :D], bias - lr * grad[:, D], bad), None

        init = (jnp.zeros((P, D)), jnp.full((P,), prior), jnp.zeros(P, bool))
        (theta, bias, bad), _ = jax.lax.scan(step, init, _step_sizes(t))
        test_logits = theta @ jnp.asarray(t.test["phi"]).T + bias[:, None]
        score = average_precision(test_logits, jnp.asarray(t.test["y"]))
    elif branch == "cls":
        K = t.num_classes
        eye = jnp.eye(K, dtype=jnp.float32)
        directions = jnp.broadcast_to(eye[:, None, None, :], (K, 1, M, K)).reshape(K, 1, M * K)

        def step(carry, lr):
            W, b, bad = carry
            logits = jnp.einsum("md,pdk->pmk", phi, W) + b[:, None, :]
            d = derivatives(logits.reshape(P, 1, M * K), directions)
            g = jnp.moveaxis(d, 0, -1) / M  # [P, M, K]
            bad = bad | ~jnp.all(jnp.isfinite(g), axis=(1, 2))
            g = jnp.where(jnp.isfinite(g), g, 0.0)
            grad = _normalized(jnp.concatenate([jnp.einsum("md,pmk->pdk", phi, g),
                                                g.sum(1)[:, None, :]], 1))
            return (W - lr * grad[:, :D], b - lr * grad[:, D], bad), None

        init = (jnp.zeros((P, D, K)), jnp.zeros((P, K)), jnp.zeros(P, bool))
        (W, b, bad), _ = jax.lax.scan(step, init, _step_sizes(t))
        test_logits = jnp.einsum("md,pdk->pmk", jnp.asarray(t.test["phi"]), W) + b[:, None, :]
        prob = jax.nn.softmax(test_logits, axis=-1)
        labels = jnp.asarray(t.test["y"])
        score = jnp.mean(jnp.stack([average_precision(prob[:, :, c], labels[:, c])
                                    for c in range(1, K)]), axis=0)
    else:
        proposal, gt = jnp.asarray(t.train["proposal"]), jnp.asarray(t.train["gt"])
        directions = jnp.eye(3, dtype=jnp.float32)[:, :, None] * jnp.ones((1, 1, M))
        geometry = lambda d, p, g: areas(decode(p, d), g)  # noqa: E731
        jac = jax.vmap(jax.vmap(jax.jacfwd(geometry), (0, 0, 0)), (0, None, None))

        def step(carry, lr):
            W, bad = carry
            deltas = jnp.einsum("md,pdk->pmk", phi, W)  # [P, M, 4]
            iue = areas(decode(proposal, deltas), gt)  # [P, M, 3]
            d = derivatives(jnp.moveaxis(iue, -1, 1), directions)
            dl_diue = jnp.moveaxis(d, 0, -1)  # [P, M, 3]
            g = jnp.einsum("pmk,pmkj->pmj", dl_diue, jac(deltas, proposal, gt)) / M
            bad = bad | ~jnp.all(jnp.isfinite(g), axis=(1, 2))
            g = jnp.where(jnp.isfinite(g), g, 0.0)
            return (W - lr * _normalized(jnp.einsum("md,pmj->pdj", phi, g)), bad), None

        init = (jnp.zeros((P, D, 4)), jnp.zeros(P, bool))
        (W, bad), _ = jax.lax.scan(step, init, _step_sizes(t))
        test_deltas = jnp.einsum("md,pdk->pmk", jnp.asarray(t.test["phi"]), W)
        iue = areas(decode(jnp.asarray(t.test["proposal"]), test_deltas),
                    jnp.asarray(t.test["gt"]))
        score = jnp.mean(iue[..., 0] / iue[..., 1], axis=1)
    bad = bad | ~jnp.isfinite(score)
    return jnp.where(bad, 0.0, score), bad


@dataclass(frozen=True)
class SimResult:
    """Outcome of the simulation for a population.

    Attributes:
      score: float [P]: AP (classification) or mean IoU (regression) on the task's test split.
      diverged: bool [P]: the loss or its gradient went non-finite during training.
      learned: bool [P]: not diverged and score >= threshold.
      threshold: the score a candidate must reach (see :func:`threshold`).
    """

    score: np.ndarray
    diverged: np.ndarray
    learned: np.ndarray
    threshold: float


def _scores(pop: Population, chunk: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    t = task(pop.branch, seed)
    points = t.train["phi"].shape[0] * t.num_classes
    genomes, block = batched.padded(pop, points)
    score, bad = _train_and_score(genomes, block=block, chunk=chunk, seed=seed)
    return np.asarray(score[: len(pop)]), np.asarray(bad[: len(pop)])


def untrained_score(branch: str) -> float:
    """Score of the untrained model: the positive rate / class frequency, or the proposals' IoU."""
    t = task(branch)
    if branch == "cls_binary":
        return float(t.test["y"].mean())
    if branch == "cls":
        return float(t.test["y"][:, 1:].mean())
    iue = np.asarray(areas(jnp.asarray(t.test["proposal"]), jnp.asarray(t.test["gt"])))
    return float(np.mean(iue[:, 0] / iue[:, 1]))


@functools.lru_cache(maxsize=None)
def reference_score(branch: str, chunk: int = batched.DEFAULT_CHUNK) -> float:
    """Score of the branch's reference loss (BCE, CE, IoU loss) trained the same way."""
    from jaxloss.space.library import LIBRARY

    score, _ = _scores(from_losses([LIBRARY[REFERENCE[branch]]]), chunk)
    return float(score[0])


def threshold(branch: str) -> float:
    """untrained + LEARN_FRACTION · (reference - untrained)."""
    base = untrained_score(branch)
    return base + LEARN_FRACTION * (reference_score(branch) - base)


def simulate(losses, branch: str | None = None, *, chunk: int = batched.DEFAULT_CHUNK,
             task_seed: int = 0) -> SimResult:
    """Train a small model with every candidate loss (see the module docstring) and score it.

    ``task_seed`` other than 0 trains on another draw of the same kind of task (the threshold
    stays the one of seed 0): for measuring how much a score depends on the data.
    """
    pop = as_population(losses, branch)
    check_valid(pop)
    score, diverged = _scores(pop, chunk, task_seed)
    limit = threshold(pop.branch)
    return SimResult(score, diverged, (~diverged) & (score >= limit), limit)


def simulate_by_class(pop: Population, cache: dict | None = None, *,
                      chunk: int = batched.DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray, list]:
    """The simulation run once per functional-equivalence class (:mod:`.equivalence`): the first
    member of each class not yet in ``cache`` is trained, every member gets its class's result.

    Args:
      pop: candidates of one branch.
      cache: fingerprint → (score, learned), read and extended in place (None: no cache). A
        search keeps one across generations, so a function is simulated once per run.

    Returns:
      (score float32 [P], learned bool [P], fingerprints: 16 bytes per candidate).
    """
    from jaxloss.filters import equivalence

    cache = {} if cache is None else cache
    prints = equivalence.fingerprints(pop)
    todo = np.array([k for k, fp in enumerate(prints) if fp not in cache], np.int64)
    if todo.size:
        representatives, _ = equivalence.classes([prints[k] for k in todo])
        rows = todo[representatives]
        result = simulate(pop.numpy()[rows], chunk=chunk)
        for k, s, ok in zip(rows, result.score, result.learned):
            cache[prints[k]] = (float(s), bool(ok))
    score = np.array([cache[fp][0] for fp in prints], np.float32)
    learned = np.array([cache[fp][1] for fp in prints], bool)
    return score, learned, prints
