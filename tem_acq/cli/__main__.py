"""``python -m tem_acq.cli``: the ``tem-acq`` command (what torchrun starts for ``--nproc``)."""

import sys

from tem_acq.cli import main

if __name__ == "__main__":
    sys.exit(main())
