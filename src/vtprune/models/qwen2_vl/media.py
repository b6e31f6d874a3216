"""The images and videos of one Qwen forward: their (t, rows, cols) grids, the vision
tower call that encoded each kind, and their order in the prompt.

Qwen encodes images and videos in separate calls of the same vision tower (images
first, both in ``forward`` and in ``generate``, which encodes them before the prefill and
drops their grids) and scatters each kind's features into its own placeholders
(``image_token_id``, ``video_token_id``). A layout unit is an image or a whole video,
numbered in order of appearance through the batch, as runtime/layout.py requires.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...runtime.forward_inputs import Forward
from ...runtime.vision import VisionCall
from ..media_order import KINDS


@dataclass(frozen=True)
class Media:
    """One kind of a forward's visual inputs.

    grids: (t, rows, cols) of each item in LLM tokens (t: temporal patches, the frames of
           a video; 1 for an image), in the order the model encoded them
    call:  the recorded vision tower call that encoded them (``None``: not recorded)
    """

    kind: str
    grids: tuple[tuple[int, int, int], ...]
    call: VisionCall | None

    @property
    def counts(self) -> list[int]:
        return [t * rows * cols for t, rows, cols in self.grids]


def llm_grids(grid_thw: torch.Tensor, merge: int) -> tuple[tuple[int, int, int], ...]:
    """(t, h, w) in vision patches -> (t, rows, cols) in LLM tokens (the 2x2 merger)."""
    return tuple((t, h // merge, w // merge) for t, h, w in grid_thw.tolist())


def _token_counts(forward: Forward, kind: str, merge: int) -> tuple[list[int], tuple | None]:
    """Per item of ``kind``: its tokens, and its grids where the inputs give them."""
    grid_thw = forward.core_inputs.get(f"{kind}_grid_thw")
    if grid_thw is not None:
        grids = llm_grids(grid_thw, merge)
        return [t * r * c for t, r, c in grids], grids
    encoded = forward.encoded_images if kind == "image" else forward.encoded_videos
    return [len(f) for f in encoded or ()], None


def forward_media(forward: Forward, merge: int) -> dict[str, Media]:
    """The forward's images and videos that bring features (cached in ``forward.extras``).

    The video call is the latest recorded call with the videos' token counts, the image
    call the latest before it with the images' (an image and a video of equal counts are
    told apart by that order)."""
    if "qwen_media" in forward.extras:
        return forward.extras["qwen_media"]
    present = {"image": forward.has_image_features, "video": forward.has_video_features}
    calls = list(forward.vision_calls)
    media: dict[str, Media] = {}
    end = len(calls)
    for kind in reversed(KINDS):
        if not present[kind]:
            continue
        counts, grids = _token_counts(forward, kind, merge)
        at = next(
            (i for i in range(end - 1, -1, -1) if calls[i].info and [t * r * c for t, r, c in calls[i].info] == counts),
            None,
        )
        call = calls[at] if at is not None else None
        if at is not None:
            end = at
        if grids is None:
            if call is None:
                raise RuntimeError(
                    f"the {kind}s' token grids are unknown: pass {kind}_grid_thw with precomputed "
                    f"{kind} features, or compute them with this model's get_{kind}_features"
                )
            grids = tuple(call.info)
        if grids:
            media[kind] = Media(kind, tuple(grids), call)
    forward.extras["qwen_media"] = media
    return media
