"""reverie: DreamerV3 world-model reinforcement learning in PyTorch."""

__version__ = "0.1.0"


def __getattr__(name):
    # keep `import reverie` light (env worker processes import it): load torch lazily
    if name == "Dreamer":
        from reverie.api import Dreamer

        return Dreamer
    if name == "load_policy":
        from reverie.policy import load_policy

        return load_policy
    raise AttributeError(name)


__all__ = ["Dreamer", "load_policy", "__version__"]
