"""Pictures of which visual tokens a pruning method kept.

    from vtprune.viz import overlay, geometry_for
    picture = overlay(image, handle.last_keep[0][0], processor)   # a PIL image

:func:`geometry_for` maps every token index back to the pixels of the original image
it was made from (through the processor's resizing, padding, cropping and tiling);
:func:`overlay` keeps kept tokens clear, dims pruned ones and outlines merged groups.
"""

from .draw import legend, overlay, overlay_stages, panel_grid, side_by_side, with_key
from .geometry import GridSection, TokenGeometry, grid_geometry
from .processor_geometry import geometry_for

__all__ = [
    "GridSection",
    "TokenGeometry",
    "geometry_for",
    "grid_geometry",
    "legend",
    "overlay",
    "overlay_stages",
    "panel_grid",
    "side_by_side",
    "with_key",
]
