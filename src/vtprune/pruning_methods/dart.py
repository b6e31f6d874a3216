"""``dart``: DART, duplication-aware token reduction inside the language model.

Paper: "Stop Looking for Important Tokens in Multimodal Language Models: Duplication
Matters More", arXiv 2502.11494 (official code: github.com/ZichenWen1/DART,
``llava/model/language_model/modeling_llama_self.py``, ``get_retained_image_token``).

After layer K (K=2), a few *pivot* tokens are chosen by the L1 norm of their layer-K
attention keys; then each pivot in turn claims its share of the budget among the image
tokens least similar to it, so the kept set holds the image pivots plus the tokens
least duplicated with the pivots.

As in the official code: the keys are layer K's keys *after* RoPE (signal
``keys_rope``), heads concatenated; 4 pivots among the image's tokens and 4 among the
text tokens after the image (the instruction, signal ``text_keys_rope``), each the
largest key L1 norm of its kind; the similarity is the cosine of the hidden states
after layer K passed through the model's final norm (``hidden_norm``, the official
``self.norm(layer_outputs[0])``); each pivot claims, among the image tokens not yet
taken (image pivots excluded), those with the lowest cosine to it; image pivots are
kept, text pivots are not.

Differences, each because an exact per-image budget is kept:

* the official code keeps ``image_pivots + (pivots) * (B // pivots)`` tokens (132 for
  B=128); here exactly B: the B - image_pivots claims are split evenly among the pivots,
  the remainder one each to the first pivots visited. With B set to the official count
  (68, 132, 196 for 64, 128, 192) the kept sets are the official ones.
* pivots are visited in sequence order (image pivots in raster order, then text
  pivots); the official code iterates a Python ``set`` of their sequence indices, whose
  order is CPython's hash-table order. End to end on a tiny random LLaVA (4 prompts),
  the kept sets overlap the official ones (Jaccard) 0.89, 0.89 and 0.86 at 64, 128 and
  192 (0.94, 0.97, 0.98 with the official code visiting in sequence order: the
  difference is then only the exact budget); on random inputs (576 tokens, 32 text
  tokens, 10 seeds) the two orders alone overlap 0.97, 0.95 and 0.93.
* an instruction with fewer text tokens than ``text_pivots`` uses all of them.

``hidden="raw"`` takes the cosine of the raw layer-K hidden states instead.
"""

from __future__ import annotations

import torch

from ..configs.dart import DARTConfig
from ..signals import Signals
from .scoring import gather_rows, keep_all, unit_rows


def pivot_quotas(budget: int, image_pivots: int, text_pivots: torch.Tensor) -> torch.Tensor:
    """(I, image_pivots + max text pivots) tokens each pivot claims besides itself: the
    ``budget - image_pivots`` claims split evenly among an image's pivots, the remainder one
    each to the first ones; 0 for the text-pivot slots an image lacks."""
    slots = image_pivots + int(text_pivots.max()) if text_pivots.numel() else image_pivots
    count = image_pivots + text_pivots  # (I,) pivots of each image
    share = torch.div(budget - image_pivots, count, rounding_mode="floor")
    extra = (budget - image_pivots) - share * count
    slot = torch.arange(slots, device=count.device)[None, :]
    quotas = share[:, None] + (slot < extra[:, None]).long()
    return quotas.masked_fill(slot >= count[:, None], 0)


def select_dart(signals: Signals, budget: int, config: DARTConfig) -> torch.Tensor:
    n = signals.num_tokens
    budget = min(budget, n)
    if budget >= n:
        return keep_all(signals)
    where = f"llm:{config.layer}"
    hidden_name = "hidden_norm" if config.hidden == "final_norm" else "hidden"
    hidden = unit_rows(signals[f"{hidden_name}@{where}"].float())  # (I, N, D)
    num_images, device = signals.num_images, signals.device
    rows = torch.arange(num_images, device=device)

    image_count = min(config.image_pivots, budget)
    norms = signals[f"keys_rope@{where}"].float().abs().sum(-1)
    image_pivots = norms.topk(image_count, dim=1).indices.sort(dim=1).values  # raster order
    pivot_states = [gather_rows(hidden, image_pivots)]
    text_count = torch.zeros(num_images, dtype=torch.long, device=device)
    if config.text_pivots > 0:
        mask = signals["text_mask"].bool()
        text_norms = signals[f"text_keys_rope@{where}"].float().abs().sum(-1).masked_fill(~mask, float("-inf"))
        width = min(config.text_pivots, text_norms.shape[1])
        text_pivots = text_norms.topk(width, dim=1).indices.sort(dim=1).values  # sequence order
        text_count = mask.sum(1).clamp(max=width)
        # An image with fewer real text tokens: its real ones sort first (the -inf ones last).
        valid_first = torch.where(mask.gather(1, text_pivots), text_pivots, text_pivots + mask.shape[1])
        text_pivots = text_pivots.gather(1, valid_first.argsort(dim=1))
        text_hidden = unit_rows(signals[f"text_{hidden_name}@{where}"].float())
        pivot_states.append(gather_rows(text_hidden, text_pivots))
    pivots = torch.cat(pivot_states, dim=1)  # (I, P, D) in visiting order
    quotas = pivot_quotas(budget, image_count, text_count)

    taken = torch.zeros(num_images, n, dtype=torch.bool, device=device)
    taken[rows[:, None], image_pivots] = True
    # Pivots claim in turn (each skips what the earlier ones took); their largest quotas
    # are read once, so the loop has no host sync of its own.
    for p, most in enumerate(quotas.max(dim=0).values.tolist()):
        if most == 0:
            continue
        similarity = (hidden @ pivots[:, p, :, None]).squeeze(-1).masked_fill(taken, float("inf"))
        chosen = similarity.topk(most, dim=1, largest=False).indices
        claim = torch.arange(most, device=device)[None, :] < quotas[:, p : p + 1]
        taken[rows[:, None].expand_as(chosen)[claim], chosen[claim]] = True
    return torch.argsort((~taken).to(torch.uint8), dim=1, stable=True)[:, :budget]
