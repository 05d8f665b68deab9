"""Populations of fixed-shape integer genomes: the form in which candidates travel through JAX.

A genome is a loss graph (:mod:`jaxloss.space.graph`) written into arrays of a fixed capacity, so that a
whole population has one shape and goes through one compiled call:

==========  ======================  =========================================================
field       shape, dtype            meaning
==========  ======================  =========================================================
``ops``     [P, capacity] int32     opcode of each node (:mod:`jaxloss.space.ops`); 0 = unused slot
``lhs``     [P, capacity] int32     first operand: index of an earlier node of the same genome
``rhs``     [P, capacity] int32     second operand (binary operators only)
``size``    [P] int32               number of used slots; node ``size - 1`` is the output
==========  ======================  =========================================================

A *valid* genome of a branch has 1 ≤ size ≤ capacity; every used slot holds an opcode of the
branch; operands point strictly backwards (so slot 0 is a leaf); unused operand fields and unused
slots are 0. Nodes the output does not depend on are allowed (mutation makes them); they are computed
and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss.space import branches, ops
from jaxloss.space.graph import Node, compact
from jaxloss.space.library import LIBRARY
from jaxloss.space.loss import Loss
from jaxloss.space.resolve import as_loss

_ARITY = np.zeros(ops.NUM_OPCODES, np.int32)
for _c, _s in ops.OPS.items():
    _ARITY[_c] = _s.arity
ARITY = _ARITY
"""Arity of every opcode, as an array indexed by opcode (0 for leaves and for NOP)."""


@dataclass(frozen=True)
class Population:
    """A batch of genomes of one branch (see the module docstring for the fields).

    Arrays may be NumPy or JAX arrays; ``branch`` is static metadata (a pytree leaf it is not).
    """

    ops: np.ndarray
    lhs: np.ndarray
    rhs: np.ndarray
    size: np.ndarray
    branch: str

    @property
    def capacity(self) -> int:
        return int(self.ops.shape[-1])

    def __len__(self) -> int:
        return int(self.ops.shape[0])

    def __getitem__(self, index):
        """``pop[k]`` is a :class:`jaxloss.Loss`; ``pop[slice or index array]`` a Population."""
        if isinstance(index, (int, np.integer)):
            return Loss(genome_to_graph(self, int(index)), self.branch)
        return Population(self.ops[index], self.lhs[index], self.rhs[index], self.size[index],
                          self.branch)

    def losses(self) -> list:
        """Every genome as a :class:`jaxloss.Loss` (a host-side loop: for reports, not hot paths)."""
        return [self[k] for k in range(len(self))]

    def numpy(self) -> "Population":
        """The same genomes as NumPy int32 arrays (host-side)."""
        return Population(*(np.asarray(a, np.int32) for a in (self.ops, self.lhs, self.rhs,
                                                              self.size)), self.branch)

    def jax(self) -> "Population":
        """The same genomes as JAX int32 arrays (for jitted code and evosax ask / tell)."""
        return Population(*(jnp.asarray(a, jnp.int32) for a in (self.ops, self.lhs, self.rhs,
                                                                self.size)), self.branch)


jax.tree_util.register_dataclass(
    Population, data_fields=["ops", "lhs", "rhs", "size"], meta_fields=["branch"])


def empty(n: int, capacity: int, branch: str) -> Population:
    """A population of ``n`` all-zero genome slots (size 0: not yet valid)."""
    z = np.zeros((n, capacity), np.int32)
    return Population(z, z.copy(), z.copy(), np.zeros(n, np.int32), branches.get(branch).name)


def empty_genome(capacity: int, branch: str) -> Population:
    """One all-zero genome as JAX arrays: ``ops``/``lhs``/``rhs`` [capacity], ``size`` [].

    The per-genome form (what a function vmapped over a population sees) and the evosax solution
    template of the evolution algorithms (:mod:`jaxloss.evolution`).
    """
    z = jnp.zeros(capacity, jnp.int32)
    return Population(z, z, z, jnp.zeros((), jnp.int32), branches.get(branch).name)


def from_graphs(graphs: Sequence[Sequence[Node]], branch: str, capacity: int) -> Population:
    """Write graphs into a population of the given capacity.

    Raises ValueError naming the first graph that needs more nodes than ``capacity``.
    """
    pop = empty(len(graphs), capacity, branch)
    for k, graph in enumerate(graphs):
        if len(graph) > capacity:
            raise ValueError(f"loss {k} needs {len(graph)} nodes but the capacity is {capacity}")
        for j, (code, lhs, rhs) in enumerate(graph):
            pop.ops[k, j], pop.lhs[k, j], pop.rhs[k, j] = code, lhs, rhs
        pop.size[k] = len(graph)
    return pop


def from_losses(losses: Sequence, capacity: int | None = None) -> Population:
    """Losses of one branch as a population (capacity defaults to the largest node count)."""
    losses = list(losses)
    if not losses:
        raise ValueError("no losses given")
    found = sorted({loss.branch for loss in losses})
    if len(found) > 1:
        raise ValueError(f"losses of different branches ({', '.join(found)}) cannot share a "
                         "population: they take different inputs")
    graphs = [loss.graph for loss in losses]
    return from_graphs(graphs, found[0], capacity or max(len(g) for g in graphs))


def _round_capacity(n: int) -> int:
    """Capacities are rounded up to a multiple of 8 so that populations share compilations."""
    return max(8, -(-n // 8) * 8)


def as_population(losses, branch: str | None = None) -> Population:
    """A population from a Population, a Loss, a library name, formula text, or a list of those
    (each resolved by :func:`jaxloss.space.resolve.as_loss`).

    Formula text needs ``branch`` unless a Loss or a library name in the list gives it; losses
    must all belong to one branch. The capacity is the largest node count rounded up to a multiple
    of 8 (so that populations share compilations).
    """
    if isinstance(losses, Population):
        if branch is not None and branches.get(branch).name != losses.branch:
            raise ValueError(f"the population is of branch {losses.branch}, not {branch}")
        return losses
    if isinstance(losses, (Loss, str)):
        losses = [losses]
    losses = list(losses)
    if not losses:
        raise ValueError("no losses given")
    if branch is None:
        found = sorted({l.branch if isinstance(l, Loss) else LIBRARY[l.strip()].branch
                        for l in losses if isinstance(l, Loss)
                        or (isinstance(l, str) and l.strip() in LIBRARY)})
        if len(found) > 1:
            raise ValueError(f"losses of different branches ({', '.join(found)}) cannot be "
                             "evaluated together: they take different inputs")
        branch = found[0] if found else None
    resolved = [as_loss(l, branch) for l in losses]
    graphs = [l.graph for l in resolved]
    return from_graphs(graphs, resolved[0].branch, _round_capacity(max(len(g) for g in graphs)))


def genome_to_graph(pop: Population, k: int) -> tuple[Node, ...]:
    """Genome ``k`` as a compact graph (dead nodes dropped, duplicates merged)."""
    size = int(pop.size[k])
    if size < 1:
        raise ValueError(f"genome {k} is empty (size 0)")
    codes, lhs, rhs = (np.asarray(a[k, :size]).tolist() for a in (pop.ops, pop.lhs, pop.rhs))
    return compact(list(zip(codes, lhs, rhs)), size - 1)


def pad_capacity(pop: Population, capacity: int) -> Population:
    """The same genomes with ``capacity`` slots (unused slots appended)."""
    extra = capacity - pop.capacity
    if extra < 0:
        raise ValueError(f"cannot shrink capacity {pop.capacity} to {capacity}")
    if extra == 0:
        return pop
    pad = lambda a: np.pad(np.asarray(a), ((0, 0), (0, extra)))  # noqa: E731
    return Population(pad(pop.ops), pad(pop.lhs), pad(pop.rhs), np.asarray(pop.size), pop.branch)


def validity_errors(pop: Population) -> np.ndarray:
    """Structural problems of each genome, vectorised over the population.

    Returns:
      int32 [P] error codes: 0 valid; 1 size out of range; 2 opcode not in the branch; 3 operand
      not strictly backwards; 4 unused field or slot not zero. See :data:`VALIDITY_MESSAGES`.
    """
    branch = branches.get(pop.branch)
    o, a, b, size = (np.asarray(x) for x in (pop.ops, pop.lhs, pop.rhs, pop.size))
    P, cap = o.shape
    slot = np.arange(cap)[None, :]
    used = slot < size[:, None]
    allowed = np.zeros(ops.NUM_OPCODES, bool)
    allowed[list(branch.codes)] = True
    in_range = (o >= 0) & (o < ops.NUM_OPCODES)
    safe_codes = np.where(in_range, o, 0)
    arity = ARITY[safe_codes]
    bad_code = used & (~in_range | ~allowed[safe_codes])
    bad_lhs = used & (arity >= 1) & ((a < 0) | (a >= slot))
    bad_rhs = used & (arity == 2) & ((b < 0) | (b >= slot))
    not_zero = (~used & ((o != 0) | (a != 0) | (b != 0))) | (used & (arity < 1) & (a != 0)) \
        | (used & (arity < 2) & (b != 0))
    err = np.zeros(P, np.int32)
    err = np.where(not_zero.any(1), 4, err)
    err = np.where((bad_lhs | bad_rhs).any(1), 3, err)
    err = np.where(bad_code.any(1), 2, err)
    err = np.where((size < 1) | (size > cap), 1, err)
    return err


VALIDITY_MESSAGES = {
    1: "size must be between 1 and the capacity",
    2: "a used slot holds an opcode that is not in the branch",
    3: "an operand does not point to an earlier node",
    4: "an unused slot or operand field is not zero",
}


def check_valid(pop: Population) -> None:
    """Raise ValueError naming the first structurally invalid genome, if any."""
    err = validity_errors(pop)
    bad = np.flatnonzero(err)
    if bad.size:
        k = int(bad[0])
        raise ValueError(f"genome {k} of the {pop.branch} population is not valid: "
                         f"{VALIDITY_MESSAGES[int(err[k])]} ({bad.size} invalid genomes in all)")
