"""reverie: DreamerV3 world-model reinforcement learning in PyTorch."""

import os

__version__ = "0.1.0"

# Threads that wait passively: with the default (spinning) policy, 2 intra-op threads on
# 2 cores ran an update 2x slower than 1 thread whenever another process kept a core
# busy (env workers, a second run); passive waiting ran it as fast as 1 thread there.
# Set before torch loads OpenMP; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def __getattr__(name):
    # keep `import reverie` light (env worker processes import it): load torch lazily
    if name == "Dreamer":
        from reverie.api import Dreamer

        return Dreamer
    raise AttributeError(name)


__all__ = ["Dreamer", "__version__"]
