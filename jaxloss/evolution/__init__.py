"""Evolution as evosax algorithms over genomes: CSE (:mod:`.cse`), random search (:mod:`.random`)
and CMA-ES tuning of a loss's constants (:mod:`.tune`)."""
