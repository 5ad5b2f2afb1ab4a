"""`python -m station` runs the same command as the `station` console script."""

import sys

from station.cli import main

sys.exit(main())
