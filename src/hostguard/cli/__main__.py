"""`python -m hostguard.cli`: the same as the `hostguard` command."""

import sys

from hostguard.cli import main

sys.exit(main())
