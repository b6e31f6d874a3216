"""Where a served model's kept rows get their position ids (see :mod:`.positions`).

For a model class whose ``embed_multimodal`` returns pruned images' rows with position
channels: the channels are split off where vLLM merges the encoder outputs into the
prompt's embeddings, and the same step's forward moves those rows' ids. Both methods
defer to the stock class when the model serves no plan.
"""

from __future__ import annotations

from typing import Any

from .serving import placed_rows


class EncoderPositionsMixin:
    vtprune: Any  # the model's ServingPlan, or None

    def _vtprune_width(self) -> int:
        return int(self.config.text_config.hidden_size)

    def embed_input_ids(self, input_ids, multimodal_embeddings=None, *, is_multimodal=None, **kwargs):
        if self.vtprune is None or not multimodal_embeddings:
            return super().embed_input_ids(input_ids, multimodal_embeddings, is_multimodal=is_multimodal, **kwargs)
        features, self._vtprune_rows = placed_rows(multimodal_embeddings, is_multimodal, self._vtprune_width())
        return super().embed_input_ids(input_ids, features, is_multimodal=is_multimodal, **kwargs)

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs):
        rows, self._vtprune_rows = getattr(self, "_vtprune_rows", None), None
        if rows is not None:
            from .positions import place

            positions = place(positions, *rows)
        return super().forward(input_ids, positions, intermediate_tensors, inputs_embeds, **kwargs)
