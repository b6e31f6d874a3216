"""Real-scale architectures with random weights, for speed measurements.

Speed does not depend on weight values, so a benchmark can build the exact shapes of
LLaVA-1.5-7B or Qwen2.5-VL-7B from their published configs without downloading
anything. ``layers`` truncates the language model (for CPUs, where 32 layers of a 7B
model take minutes per forward). Each family declares its architectures (real scale,
and the tiny test models named for the bench) in its registry record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..models.family import Architecture, TestModel

from ..models.listing import architecture_names

# From the families' names (torch-free), so the command line offers them without
# importing torch: real-scale ones first, then the tiny test models.
ARCHITECTURES = tuple(sorted(architecture_names(), key=lambda name: name.startswith("tiny-")))


def registered_architectures() -> "tuple[dict[str, Architecture], dict[str, TestModel]]":
    """(real-scale architectures, tiny test models) of the registered families, by name."""
    from ..models import registered_families

    families = registered_families()
    real = {a.name: a for family in families for a in family.architectures}
    tiny = {m.architecture: m for family in families for m in family.test_models if m.architecture}
    return real, tiny


def _unknown(name: str) -> ValueError:
    return ValueError(f"architecture must be one of {ARCHITECTURES}; got {name!r}")


def config_of(name: str, *, layers: int | None = None) -> Any:
    """The transformers config of architecture ``name`` (nothing is built)."""
    real, tiny = registered_architectures()
    if name in tiny:
        return build(name, layers=layers).config
    if name not in real:
        raise _unknown(name)
    return real[name].config(layers)


def build(name: str, *, layers: int | None = None, dtype: "torch.dtype | None" = None, device: str = "cpu") -> "nn.Module":
    """A model of architecture ``name`` with random weights, in eval mode, SDPA attention
    (``dtype`` default: bfloat16)."""
    import torch
    import transformers as tf

    dtype = torch.bfloat16 if dtype is None else dtype
    real, tiny = registered_architectures()
    if name in tiny:  # the test models, for quick runs of the benchmark itself
        return tiny[name].build(dtype=dtype, layers=layers or 4).to(device)
    if name not in real:
        raise _unknown(name)
    config = real[name].config(layers)
    cls = getattr(tf, real[name].model_class)
    with torch.device(device):
        model = cls._from_config(config, attn_implementation="sdpa", dtype=dtype)
    return model.eval()
