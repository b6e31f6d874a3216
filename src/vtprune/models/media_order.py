"""Images and videos of one prompt, numbered together in order of appearance.

Families whose images and videos have placeholders of their own (Qwen2-VL's and
LLaVA-OneVision's ``image_token_id`` and ``video_token_id``) scatter each kind's
features in order among its own placeholders; a layout numbers its units in order of
appearance through the batch (runtime/layout.py), so the two kinds are merged by where
each item's first placeholder is.
"""

from __future__ import annotations

import torch

KINDS = ("image", "video")


def units_in_prompt_order(masks: dict[str, torch.Tensor], counts: dict[str, list[int]]) -> list[tuple[str, int]]:
    """(kind, item) of every image and video, in order of appearance through the batch.

    ``masks[kind]``: (B, L) its placeholders; ``counts[kind]``: each item's placeholders,
    in the order the model scatters them. With one kind no transfer is needed; with both,
    the flat position of each item's first placeholder orders them (one host transfer)."""
    kinds = [kind for kind in KINDS if counts.get(kind)]
    if len(kinds) == 1:
        return [(kinds[0], i) for i in range(len(counts[kinds[0]]))]
    firsts, units = [], []
    for kind in kinds:
        flat = masks[kind].reshape(-1)
        positions = torch.argsort((~flat).to(torch.uint8), stable=True)
        sizes = torch.tensor(counts[kind], device=flat.device)
        firsts.append(positions[torch.cumsum(sizes, 0) - sizes])
        units += [(kind, i) for i in range(len(sizes))]
    order = torch.argsort(torch.cat(firsts)).tolist()
    return [units[i] for i in order]
