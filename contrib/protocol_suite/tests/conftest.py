"""Run the kit's tests without installing it: put the package directory on
``sys.path`` (an installed copy works the same)."""

import sys
from pathlib import Path

PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)
if PACKAGE_DIR not in sys.path:
    sys.path.insert(0, PACKAGE_DIR)
