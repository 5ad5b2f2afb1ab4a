"""The bundle's entry point: the same `station` command as the console script, frozen by PyInstaller."""

import multiprocessing
import sys

from station.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # torch's data loader workers start the frozen executable again
    sys.exit(main())
