"""Candidates as arrays: the :class:`~jaxloss.genome.population.Population` pytree (fixed-shape
integer genomes), random sampling and variation (crossover, mutation, tournament)."""
