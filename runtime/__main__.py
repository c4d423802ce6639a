"""`python -m runtime`: the container runtime's command line (see runtime/container/cli.py)."""

import sys

from runtime.container.cli import main

sys.exit(main())
