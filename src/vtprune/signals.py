"""Signals: what a selection function may read, computed lazily on demand.

A stage runs once per *group* of images that share a token grid (all LLaVA-1.5 images
form one group; Qwen2-VL images of different sizes form several). Tensors are batched
over the I images of the group; N is the number of tokens each image still has at
this stage (all of them before the LLM, fewer after an earlier stage).

Always available (no declaration needed):

====================  ===========  =====================================================
``grid``              (rows, cols) the image's full token grid
``token_index``       (I, N) long  index of each current token in that grid (raster order)
``coords``            (I, N, 2)    (row, col) of each current token, float
``ordinal``           (I,) long    index of the image within its prompt (0 for the first)
====================  ===========  =====================================================

Declared in a stage's ``needs`` and computed by the model adapter only when declared:

============================  ==============  =======================================
``visual``                    (I, N, D)       the tokens' features at the LLM input
                                              (projector outputs)
``entry_visual``              (I, N0, D)      the same for all N0 tokens the image had
                                              at the LLM input, whatever a stage
                                              inside it dropped since
``vision_saliency``           (I, N)          CLS attention to each token in the vision
                                              layer the LLM reads, heads averaged; mean
                                              attention received for encoders without CLS
``vision_keys``               (I, N, Dk)      that vision layer's attention keys, averaged over heads
``text_embeds``               (I, T, D)       input embeddings of the instruction tokens
                                              of the image's prompt (right-padded)
``text_mask``                 (I, T) bool     which of the T rows are real tokens
``text_relevance``            (I, N)          cosine between each token and the prompt:
                                              in CLIP space when a CLIP text tower is
                                              attached, else between ``visual`` and the
                                              mean of ``text_embeds``
``clip_relevance``            (I, N)          cosine, in CLIP space, between each patch of
                                              the vision layer the LLM reads (post layer
                                              norm, CLIP projection) and the CLIP text
                                              embedding of the instruction (LLaVA-1.5,
                                              with a text tower)
``attn_rows@llm:K``           (I, T, N)       attention of LLM layer K from the
                                              instruction tokens to the image's tokens,
                                              heads averaged (rows of ``text_mask``)
``attn_last@llm:K``           (I, N)          the same from the prompt's last token (the
                                              last real token of its row: left or right
                                              padding alike)
``attn_last_next@llm:K``      (I, N)          the same with layer K+1's norm and q/k
                                              projections applied to the hidden states
                                              after layer K (PDrop's ranking)
``hidden@llm:K``              (I, N, D)       hidden states after layer K
``hidden_norm@llm:K``         (I, N, D)       the same through the model's final norm
``keys@llm:K``                (I, N, Dk)      layer K's attention keys (heads concatenated)
``keys_rope@llm:K``           (I, N, Dk)      the same after RoPE, as attention uses them
``text_hidden@llm:K``         (I, T, D)       ``hidden`` of the instruction tokens
``text_hidden_norm@llm:K``    (I, T, D)       ``hidden_norm`` of the instruction tokens
``text_keys_rope@llm:K``      (I, T, Dk)      ``keys_rope`` of the instruction tokens
============================  ==============  =======================================

Layer K counts from 1: ``llm:2`` is the state after the first two decoder layers.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

from .signal_names import (  # noqa: F401 - the names, torch-free, importable from here too
    FAMILY_SIGNALS,
    LLM_SIGNALS,
    PLAIN_SIGNALS,
    TEXT_ROW_SIGNALS,
    VISION_SIGNALS,
    parse_signal,
)


class Signals:
    """Read-only, lazily computed view of one group of images.

    ``source(name)`` computes a declared signal for this group; results are cached, so
    two reads cost one computation. Reading an undeclared signal is an error: adapters
    only pay for what a stage declares.
    """

    def __init__(
        self,
        *,
        grid: tuple[int, int],
        token_index: torch.Tensor,
        ordinal: torch.Tensor,
        needs: frozenset[str],
        source: Callable[[str], torch.Tensor],
    ) -> None:
        for name in needs:
            parse_signal(name)
        if any(parse_signal(n)[0] in TEXT_ROW_SIGNALS for n in needs):
            needs = frozenset(needs) | {"text_mask"}  # the rows those signals are padded to
        self.grid = (int(grid[0]), int(grid[1]))
        self.token_index = token_index
        self.ordinal = ordinal
        self.needs = frozenset(needs)
        self._source = source
        self._cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_tensors(
        cls,
        grid: tuple[int, int],
        token_index: torch.Tensor | None = None,
        ordinal: torch.Tensor | None = None,
        **tensors: torch.Tensor,
    ) -> "Signals":
        """Signals over given tensors, for tests and for calling a method by hand.

        Keyword names with ``@`` cannot be Python identifiers: pass them through
        ``**{"attn_last@llm:2": rows}``.
        """
        first = next(iter(tensors.values()), None)
        num_images = first.shape[0] if first is not None else (ordinal.shape[0] if ordinal is not None else 1)
        device = first.device if first is not None else torch.device("cpu")
        if token_index is None:
            n = grid[0] * grid[1]
            token_index = torch.arange(n, device=device).expand(num_images, n)
        if ordinal is None:
            ordinal = torch.zeros(num_images, dtype=torch.long, device=device)
        store: Mapping[str, torch.Tensor] = dict(tensors)

        def source(name: str) -> torch.Tensor:
            if name not in store:
                raise KeyError(f"signal {name!r} was declared but not given")
            return store[name]

        return cls(grid=grid, token_index=token_index, ordinal=ordinal, needs=frozenset(store), source=source)

    # -- always available ------------------------------------------------------------
    @property
    def num_images(self) -> int:
        return self.token_index.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.token_index.shape[1]

    @property
    def device(self) -> torch.device:
        return self.token_index.device

    @property
    def coords(self) -> torch.Tensor:
        """(I, N, 2) float (row, col) of each current token on the image's grid."""
        cols = self.grid[1]
        rows = torch.div(self.token_index, cols, rounding_mode="floor")
        return torch.stack((rows, self.token_index - rows * cols), dim=-1).float()

    # -- declared ----------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._cache:
            if name not in self.needs:
                raise KeyError(
                    f"signal {name!r} was not declared by this stage; declared: {sorted(self.needs)}"
                )
            self._cache[name] = self._source(name)
        return self._cache[name]

    def __contains__(self, name: str) -> bool:
        return name in self.needs

    @property
    def visual(self) -> torch.Tensor:
        return self["visual"]

    def __repr__(self) -> str:
        return (
            f"Signals(images={self.num_images}, tokens={self.num_tokens}, grid={self.grid}, "
            f"needs={sorted(self.needs)})"
        )
