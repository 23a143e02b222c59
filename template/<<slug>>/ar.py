#!/usr/bin/env python
"""Runner of this experiment. Usage: python .autoresearch/<slug>/ar.py {run,status,tail,report,session,chain,upgrade}

Needs only the standard library (plus psutil when installed); the training
runs in a subprocess with the host project root as its working directory.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from arunner.commands.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
