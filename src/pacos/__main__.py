"""`python -m pacos ...`: the same as the `pacos` command."""

import sys

from pacos.cli import main

sys.exit(main())
