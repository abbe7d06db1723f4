"""`python -m reverie` and `torchrun --nproc-per-node N -m reverie train ...`: the CLI,
with one line (not a traceback) when another rank of a data-parallel job has ended."""

from __future__ import annotations

import signal
import sys

from reverie.cli import main
from reverie.distributed import RankLostError


def run() -> int:
    try:
        return main()
    except RankLostError as e:
        print(f"reverie: error: {e}", file=sys.stderr)
        # torchrun now stops the other ranks with SIGTERM, this one included: it is
        # already on its way out, without a second message
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return 1


if __name__ == "__main__":
    sys.exit(run())
