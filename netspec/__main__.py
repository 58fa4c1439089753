"""``python -m netspec``: the same command line as the ``netspec`` script."""

import sys

from .cli.main import main

sys.exit(main())
