"""The search space: operators and their guards, branches, loss graphs, the two notations (parse,
print), the :class:`Loss` object and the library of known losses. Pure Python and NumPy, no JAX
computation; every other layer builds on this one."""
