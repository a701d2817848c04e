"""`python -m runner.cli`: the scheduler starts jobs this way, with its own interpreter."""

import sys

from runner.cli import main

sys.exit(main())
