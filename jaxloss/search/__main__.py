"""``python -m jaxloss.search``: see :mod:`jaxloss.search.cli`."""

import sys

from jaxloss.search.cli import main

sys.exit(main(every_core_by_default=True))
