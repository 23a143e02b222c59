#!/usr/bin/env python
"""Runner of this experiment. Usage: python .autoresearch/<slug>/ar.py {run,status,tail,report,session,chain,upgrade}

Needs only the standard library (plus psutil when installed); the training
runs in a subprocess with the host project root as its working directory.
"""

import gc
import os
import sys

# A command is a fraction of a second of Python work (training runs in a subprocess): the cyclic
# collector's passes over the modules as they are imported cost more (3-5 ms a command) than the few
# cycles it could free. It runs once per 100,000 new objects instead of 700: never in a short command,
# still now and then in one that waits for hours.
gc.set_threshold(100_000)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from arunner.commands.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
