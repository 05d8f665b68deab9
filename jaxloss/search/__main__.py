"""``python -m jaxloss.search``: see :mod:`jaxloss.search.cli`."""

import os
import sys

# The detector trainings share the GPU with this process: JAX must not take most of its memory
# when it starts (its default). Read when JAX creates its GPU client, at the first computation.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from jaxloss.search.cli import main  # noqa: E402

sys.exit(main(every_core_by_default=True))
