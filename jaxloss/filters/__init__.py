"""The cheap filters of the funnel: check grids, validity and convergence-property checks,
equivalence classes, the mini optimization simulation, and the funnel's statistics."""
