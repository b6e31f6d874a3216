"""Token geometry from an image processor's settings and the original image size.

Each family's geometry (``models/<family>/geometry.py``) replays, on the two axes,
exactly what its processor does to the pixels and then how the model reads the result
into tokens, from the steps here (resize, pad, center crop, cutting into cells).
:func:`geometry_for` asks the registered families which one made the processor.

The tests run the real processors on images whose colours encode their coordinates
and check every token against these boxes.
"""

from __future__ import annotations

from typing import Any

from .geometry import Axis, GridSection, TokenGeometry

ImageLike = Any  # a PIL image, or (width, height)


def image_size_of(image: ImageLike) -> tuple[int, int]:
    """(width, height) of a PIL image or of a (width, height) pair."""
    if hasattr(image, "size") and not callable(image.size) and len(image.size) == 2:
        width, height = image.size
    elif isinstance(image, (tuple, list)) and len(image) == 2:
        width, height = image
    else:
        raise TypeError(f"image must be a PIL image or a (width, height) pair; got {type(image).__name__}")
    width, height = int(width), int(height)
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive; got {width}x{height}")
    return width, height


def geometry_for(processor: Any, image: ImageLike, *, patch_size: int | None = None) -> TokenGeometry:
    """The token geometry ``processor`` gives ``image`` (a PIL image or its (width, height)).

    ``processor`` is a multimodal processor (``LlavaProcessor``, ``LlavaNextProcessor``,
    ``Qwen2VLProcessor``, ...) or its image processor. LLaVA-style models cut images into
    the vision tower's patches, which the image processor does not know: the processor
    carries it as ``patch_size``, or pass ``patch_size`` (the model's
    ``config.vision_config.patch_size``).
    """
    from ..models import registered_families

    image_processor = getattr(processor, "image_processor", processor)
    width, height = image_size_of(image)
    geometries = [family.geometry for family in registered_families()]
    for geometry in sorted(geometries, key=lambda g: g.generic):  # specific processors first
        if geometry.handles(processor, image_processor):
            return geometry.tokens(processor, image_processor, width, height, patch_size)
    raise TypeError(
        f"processor: cannot map tokens to pixels for {type(image_processor).__name__}; supported: "
        "CLIP/LLaVA, LLaVA-NeXT and Qwen2-VL image processors (or their processors)"
    )


def patch_size_of(processor: Any, patch_size: int | None) -> int:
    """The vision tower's patch size: ``patch_size``, else the processor's own."""
    patch = patch_size if patch_size is not None else getattr(processor, "patch_size", None)
    if patch is None:
        raise ValueError(
            "patch_size: this processor does not say the vision tower's patch size; pass "
            "patch_size=model.config.vision_config.patch_size"
        )
    if int(patch) < 1:
        raise ValueError(f"patch_size must be >= 1; got {patch}")
    return int(patch)


def setting(size: Any, key: str) -> int | None:
    """A field of a processor size setting (a dict in older releases, a SizeDict now)."""
    if size is None:
        return None
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return None if value is None else int(value)


def uses_torchvision(image_processor: Any) -> bool:
    names = {cls.__name__ for cls in type(image_processor).__mro__}
    return bool(names & {"TorchvisionBackend", "BaseImageProcessorFast"})


# --- the steps the processors take --------------------------------------------------------


def resized_size(size: Any, height: int, width: int) -> tuple[int, int]:
    """(height, width) after the processors' ``resize`` with setting ``size``."""
    shortest, longest = setting(size, "shortest_edge"), setting(size, "longest_edge")
    if shortest and longest:
        from transformers.image_transforms import get_size_with_aspect_ratio

        return tuple(get_size_with_aspect_ratio((height, width), shortest, longest))  # type: ignore[return-value]
    if shortest:
        # transformers.image_transforms.get_resize_output_image_size(default_to_square=False)
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(shortest * long / short)
        return (new_long, shortest) if width <= height else (shortest, new_long)
    max_height, max_width = setting(size, "max_height"), setting(size, "max_width")
    if max_height and max_width:
        scale = min(max_height / height, max_width / width)
        return int(height * scale), int(width * scale)
    fixed_height, fixed_width = setting(size, "height"), setting(size, "width")
    if fixed_height and fixed_width:
        return fixed_height, fixed_width
    raise ValueError(f"processor size setting {size!r} has no shortest_edge, max_height/max_width or height/width")


def _crop_start(length: int, crop: int, torchvision: bool) -> int:
    """Where a center crop of ``crop`` pixels starts on an axis of ``length`` pixels;
    negative when the processor pads a too-small image first (the two backends centre
    odd padding differently)."""
    if crop > length and torchvision:
        return -((crop - length) // 2)
    return (length - crop) // 2


def resize_and_crop(image_processor: Any, x: Axis, y: Axis, *, resize: bool = True) -> tuple[Axis, Axis]:
    """The processors' common tail: resize by ``size``, then center crop by ``crop_size``."""
    if resize and getattr(image_processor, "do_resize", True):
        height, width = resized_size(image_processor.size, y.length, x.length)
        x, y = x.resize(width), y.resize(height)
    crop = getattr(image_processor, "crop_size", None)
    if getattr(image_processor, "do_center_crop", False) and crop is not None:
        torchvision = uses_torchvision(image_processor)
        crop_height, crop_width = setting(crop, "height"), setting(crop, "width")
        x = x.window(_crop_start(x.length, crop_width, torchvision), crop_width)
        y = y.window(_crop_start(y.length, crop_height, torchvision), crop_height)
    return x, y


def cell_grid(name: str, start: int, x: Axis, y: Axis, cell: int, width: int, height: int) -> GridSection:
    """The processed view cut into ``cell``-pixel squares (a partial last row or column,
    which the vision tower's strided patching drops, is left out)."""
    return GridSection(name, start, x.cells(x.length // cell, cell, width), y.cells(y.length // cell, cell, height))


def square_pad(x: Axis, y: Axis) -> tuple[Axis, Axis]:
    """LLaVA's pad_to_square: the image centred on a square of its longer side."""
    side = max(x.length, y.length)
    return x.window(-((side - x.length) // 2), side), y.window(-((side - y.length) // 2), side)
