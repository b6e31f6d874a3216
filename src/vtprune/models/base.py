"""The facts every model adapter states about its family (see runtime/adapter_protocol.py).

An adapter knows one model family: which module is the multimodal core (the one that
embeds text and images and calls the language model), which tokens are visual, each
image's token grid, how position ids work, the vision tower's own signals and where
a decoder layer's attention parts are. It never decides what to keep, and it computes
no signal the runtime can derive from these facts (runtime/signal_source.py does).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from torch import nn

from ..compat import masks_per_layer
from ..registry import ModelShape
from ..runtime.attention_rows import AttentionParts
from ..runtime.compaction import Compaction
from ..runtime.forward_inputs import Forward
from ..runtime.layout import ImageLayout
from ..runtime.sequence import consecutive_ids
from ..runtime.vision import VisionCall
from ..signal_names import FAMILY_SIGNALS, parse_signal
from .listing import FamilyNames


def core_of(model: nn.Module, language_model_name: str = "language_model") -> nn.Module:
    """The multimodal core of ``model``: its ``model`` (a ...ForConditionalGeneration)
    when that holds the language model, else ``model`` itself (a bare core)."""
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, nn.Module) and hasattr(inner, language_model_name) else model


class ModelAdapter:
    """Base class of the per-family adapters."""

    names: ClassVar[FamilyNames | None] = None  # the family's names (its names.py), which set the four below
    family: ClassVar[str] = ""
    model_classes: ClassVar[tuple[str, ...]] = ()
    model_types: ClassVar[tuple[str, ...]] = ()  # the ``model_type`` of the family's configs
    position_rows: ClassVar[int] = 1  # 1: (B, L) RoPE ids; 3: (3, B, L) M-RoPE ids
    records_encoder: ClassVar[bool] = False  # record the arguments of core.get_image_features
    signals: ClassVar[frozenset[str]] = FAMILY_SIGNALS  # a family's adds its vision tower's own

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "names" in cls.__dict__ and cls.names is not None:
            cls.family, cls.model_classes = cls.names.name, cls.names.model_classes
            cls.model_types, cls.signals = cls.names.model_types, cls.names.signals

    language_model_name: ClassVar[str] = "language_model"  # the core's attribute holding its language model

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.core: nn.Module = core_of(model, self.language_model_name)
        self.language_model: nn.Module = getattr(self.core, self.language_model_name)
        self.config = self.core.config

    # -- identification --------------------------------------------------------------
    @classmethod
    def handles(cls, model: nn.Module) -> bool:
        return type(model).__name__ in cls.model_classes

    @classmethod
    def handles_config(cls, config: Any) -> bool:
        """Whether a transformers config (``AutoConfig.from_pretrained``) is of this family."""
        return getattr(config, "model_type", None) in cls.model_types

    @classmethod
    def shape_of(cls, config: Any) -> ModelShape:
        """What a method may know of a model with this config, before it is loaded."""
        return ModelShape(int(config.text_config.num_hidden_layers), cls.image_tokens_of(config))

    @classmethod
    def image_tokens_of(cls, config: Any) -> int | None:
        """Visual tokens per image when every image has the same number, else None."""
        return None

    @property
    def vision_module(self) -> nn.Module:
        """The vision tower, whose calls the runtime records (``generate`` runs it before
        the prefill, outside the core's forward)."""
        raise NotImplementedError

    def vision_call(self, args: tuple, kwargs: dict) -> Any:
        """What to remember of one call of the vision tower (default: nothing)."""
        return None

    def encoder_call(self, args: tuple, kwargs: dict) -> dict:
        """What to remember of a call of ``core.get_image_features`` (``records_encoder``)."""
        return {}

    def install_vision_capture(self, record: Callable[[str, Any], None]) -> list[Any]:
        """Hooks inside the vision tower that ``record(name, value)`` what the vision
        signals are computed from. Returns the hook handles."""
        return []

    def match_vision_call(self, forward: Forward, layout: ImageLayout) -> VisionCall | None:
        """The recorded vision call that produced this forward's images (the latest one
        with as many images)."""
        for call in reversed(forward.vision_calls):
            if isinstance(call, VisionCall) and call.info == layout.num_units:
                return call
        return None

    def vision_signal(self, name: str, call: VisionCall) -> torch.Tensor:
        """Signal ``name`` for every image of a vision call: (images, N[, D]) over each
        image's full token grid."""
        raise KeyError(f"signal {name!r} is not provided by the {self.family} adapter")

    @property
    def image_tokens(self) -> int | None:
        """Visual tokens per image when every image has the same number, else None."""
        return self.image_tokens_of(self.config)

    @property
    def num_layers(self) -> int:
        return int(self.config.text_config.num_hidden_layers)

    @property
    def image_token_id(self) -> int:
        return int(self.config.image_token_id)

    def check_stages(self, stages: list) -> None:
        """Raise before patching if the stages cannot run on this model (see
        :meth:`check_config_stages`)."""
        self.check_config_stages(self.config, stages)

    @classmethod
    def check_config_stages(cls, config: Any, stages: list) -> None:
        """Raise if the stages cannot run on a model with this config: a layer outside
        the language model, stages out of order, or a signal this adapter cannot give."""
        # A refusal first: its reason holds whatever K is asked for.
        inside = next((stage for stage in stages if stage.layer is not None), None)
        reason = cls.inside_llm_refusal(config) if inside is not None else None
        if reason is not None:
            raise ValueError(f"stage {inside.where!r}: {reason}")
        num_layers = cls.shape_of(config).num_layers
        last = 0
        for stage in stages:
            layer = stage.layer
            if layer is not None:
                if not 1 <= layer < num_layers:
                    raise ValueError(
                        f"stage {stage.where!r}: K must be in [1, {num_layers - 1}] for this model's "
                        f"{num_layers} decoder layers"
                    )
                if layer <= last:
                    raise ValueError(
                        f"stages must run in order: 'pre_llm' first, then 'llm:K' with K increasing; "
                        f"got {[s.where for s in stages]}"
                    )
                if not masks_per_layer():
                    import transformers

                    raise ValueError(
                        f"stage {stage.where!r}: pruning inside the language model needs transformers >= 5.14 "
                        f"(attention masks sized to one layer's cache); installed: {transformers.__version__}"
                    )
                last = layer
            elif last:
                raise ValueError(
                    f"stages must run in order: 'pre_llm' first, then 'llm:K' with K increasing; "
                    f"got {[s.where for s in stages]}"
                )
            for name in stage.needs:
                base, at = parse_signal(name)
                if base not in cls.signals:
                    raise ValueError(
                        f"signal {name!r} is not provided by the {cls.family} adapter; "
                        f"provided: {sorted(cls.signals)}"
                    )
                if at is not None and at != layer:
                    raise ValueError(f"stage {stage.where!r} cannot read {name!r}: only its own layer's signals")

    @classmethod
    def inside_llm_refusal(cls, config: Any) -> str | None:
        """Why no stage can run inside this model's language model (``None``: they can).
        Default: a decoder with sliding-window layers is refused, since a stage's mask
        and RoPE tables are applied to every later layer alike."""
        if "sliding_attention" in (getattr(config.text_config, "layer_types", None) or ()):
            return "in-LLM stages need full-attention layers; this model uses sliding windows"
        return None

    # -- where the images are ---------------------------------------------------------
    def image_token_mask(self, forward: Forward) -> torch.Tensor:
        """(B, L) True at image placeholder tokens of this forward's input."""
        return self.placeholder_mask(forward, self.image_token_id)

    def placeholder_mask(self, forward: Forward, token_id: int) -> torch.Tensor:
        """(B, L) True at the placeholders of ``token_id`` (image or video) of this forward."""
        input_ids = forward.core_inputs.get("input_ids")
        if input_ids is not None:
            return input_ids == token_id
        # Same rule transformers uses when only embeddings are given.
        embeds = forward.core_inputs["inputs_embeds"]
        token = self.core.get_input_embeddings()(torch.tensor(token_id, device=embeds.device))
        return (embeds == token).all(-1)

    def layout(self, forward: Forward) -> ImageLayout | None:  # pragma: no cover - abstract
        """The images of this forward, or ``None`` if it has none to prune."""
        raise NotImplementedError

    # -- positions ----------------------------------------------------------------------
    def default_positions(self, batch: int, length: int, offset: int, device: torch.device) -> torch.Tensor:
        """Position ids the language model would derive itself when given none."""
        ids = torch.arange(offset, offset + length, device=device).expand(batch, length)
        return ids if self.position_rows == 1 else ids.expand(self.position_rows, batch, length)

    def compact_positions(
        self, positions: torch.Tensor, mask: torch.Tensor, forward: Forward, compaction: Compaction
    ) -> torch.Tensor:
        """``positions="compact"``: renumber the kept tokens as if they were the whole
        sequence. 1-D RoPE: consecutive ids from the first real token's id."""
        return consecutive_ids(positions, mask.bool())

    # -- the attention mask -----------------------------------------------------------------
    def padding_mask(self, forward: Forward, kwargs: dict) -> Any:
        """The 2-D (batch, tokens) mask the language model's call stands for; ``kwargs``
        are its keyword arguments. Default: its ``attention_mask`` as given."""
        return kwargs.get("attention_mask")

    def language_model_mask(self, kwargs: dict, forward: Forward, compaction: Compaction | None) -> dict:
        """``kwargs`` (the language model's, with the 2-D mask over the compacted cache
        and chunk) with the mask in the form the language model takes; ``compaction``:
        how a prefill's tokens were kept (``None`` for a later forward). Default: the
        2-D mask, unchanged."""
        return kwargs

    # -- inputs that travel with the visual tokens -----------------------------------------
    def compact_side_inputs(self, kwargs: dict, compaction: Compaction) -> dict:
        """The language model's other per-token inputs (beyond embeddings, mask and
        positions), compacted like the tokens: ``kwargs`` are its call's keyword
        arguments. Default: it has none, and ``kwargs`` come back unchanged."""
        return kwargs

    # -- decoder layers (in-LLM stages) ---------------------------------------------------
    @property
    def decoder_layers(self) -> nn.ModuleList:
        return self.language_model.layers

    def attention_parts(self, layer: nn.Module) -> AttentionParts:
        """The pieces of ``layer``'s attention that scores depend on (Llama / Qwen2 naming)."""
        attn = layer.self_attn
        head_dim = int(attn.head_dim)
        return AttentionParts(
            norm=layer.input_layernorm,
            q_proj=attn.q_proj,
            num_heads=attn.q_proj.out_features // head_dim,
            num_kv_heads=attn.k_proj.out_features // head_dim,
            head_dim=head_dim,
            scaling=float(attn.scaling),
            k_proj=attn.k_proj,
        )

    @property
    def final_norm(self) -> nn.Module:
        """The language model's norm after its last decoder layer."""
        return self.language_model.norm

    def rope_tables(self, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder layers' (cos, sin) as their attention applies them, (B, L, head_dim)."""
        return cos, sin

    def key_projection(self, layer: nn.Module) -> nn.Module:
        """The module whose output is the layer's keys before RoPE."""
        return layer.self_attn.k_proj

    # -- the CLIP space (relevance with a text tower) ----------------------------------
    clip_text_counterpart: ClassVar[bool] = False  # the vision tower is CLIP's: a text tower matches it

    def clip_patches(self, call: VisionCall, select_layer: bool) -> torch.Tensor:
        """(images, N, Dv) patch features in the vision tower's output space (post layer
        norm), of its final layer, or with ``select_layer`` of the layer the LLM reads:
        what a CLIP projection head maps into the text tower's space."""
        raise ValueError(f"the {self.family} adapter has no CLIP vision tower")

