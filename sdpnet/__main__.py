"""``python -m sdpnet``: the command line (:mod:`sdpnet.tools.cli`)."""
import sys

from sdpnet.tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
