"""``python -m lab.executor``: see :mod:`lab.executor`."""

import sys

from lab.executor import main

sys.exit(main())
