"""``python -m netspec``: the same command line as the ``netspec`` script."""

import sys

from .cli import main

sys.exit(main())
