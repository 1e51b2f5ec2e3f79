"""``python -m cli``: the ``orchestrator`` command."""

import sys

from cli.main import main

sys.exit(main())
