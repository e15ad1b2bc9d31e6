"""``python tools/main.py --config-file CONFIG --mode MODE [KEY VALUE ...]``: the CLI of
:mod:`ascendvsr.cli` (installed as the ``ascendvsr`` command) run from a checkout."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ascendvsr.cli import *  # noqa: E402,F401,F403  (main, run, parse_args, MODES ...)
from ascendvsr.cli import main, run_cli  # noqa: E402,F401

if __name__ == '__main__':
    run_cli()
