"""``python -m ateda.cli``: the ``ateda`` command."""

import sys

from ateda.cli import main

sys.exit(main())
