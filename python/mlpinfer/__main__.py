"""``python -m mlpinfer``: the same as the ``mlpinfer`` command."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
