"""vtprune: training-free visual token pruning for Hugging Face vision-language models.

    import vtprune
    handle = vtprune.prune(model, "uniform", keep=0.25)  # or a config object
    model.generate(**inputs)                            # same call, fewer visual tokens
    handle.remove()                                     # the original model again
"""

from .config import PruneConfig, resolve_budget
from .methods.random import RandomConfig
from .methods.uniform import UniformConfig
from .models import supported_families
from .registry import Selection, Stage, get_method, register
from .runtime.record import PruneStats
from .signals import Signals

# Last, on purpose: importing the ``vtprune.methods`` subpackage binds that name to the
# package; the public name is the function that lists the methods.
from .api import PruneHandle, active_handle, disabled, methods, prune, validate  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "PruneConfig",
    "PruneHandle",
    "PruneStats",
    "RandomConfig",
    "Selection",
    "Signals",
    "Stage",
    "UniformConfig",
    "active_handle",
    "disabled",
    "get_method",
    "methods",
    "prune",
    "register",
    "resolve_budget",
    "supported_families",
    "validate",
]
