"""``python -m netspec.cli``: the same command line as the ``netspec`` script."""

import sys

from .main import main

sys.exit(main())
