"""The single-file executable's entry point: the ``switchboard`` command."""

import sys

from switchboard.core.cli import main

if __name__ == "__main__":
    sys.exit(main())
