"""The proving-ground model: LLaVA-1.5's architecture at a size a CPU can train.

``LlavaForConditionalGeneration`` with a CLIP vision tower (192 px images, 8 px
patches: a 24 x 24 grid, 576 visual tokens like LLaVA-1.5 at 336 / 14), the two-layer
GELU projector and a Llama language model, SDPA attention throughout. The processor
is a ``LlavaProcessor`` (``CLIPImageProcessor`` + the word-level tokenizer) and the
prompt is LLaVA-1.5's: ``"USER: <image>\\n{question} ASSISTANT:"``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

from .scenes import GRID, IMAGE_SIZE, PATCH
from .tokenizer import BOS, EOS, IMAGE, PAD, build_tokenizer

PROMPT = "USER: <image>\n{question} ASSISTANT:"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% if message['role'] != 'user' %}</s>{% endif %} "
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
# CLIP's normalisation, as in every LLaVA-1.5 checkpoint.
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ModelSize:
    """Widths and depths of the two towers."""

    vision_hidden: int = 96
    vision_layers: int = 2
    vision_heads: int = 4
    vision_mlp: int = 384
    text_hidden: int = 128
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 2
    text_mlp: int = 384

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def prompt(question: str) -> str:
    """The LLaVA-1.5 prompt for one question about one image."""
    return PROMPT.format(question=question)


def build_processor() -> LlavaProcessor:
    """The ``LlavaProcessor`` that turns (image, prompt) into model inputs."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_resize=True, do_center_crop=True, do_rescale=True, do_normalize=True, do_convert_rgb=True,
        image_mean=list(IMAGE_MEAN), image_std=list(IMAGE_STD),
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(),
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS token, which "default" then drops
        chat_template=CHAT_TEMPLATE,
    )


def model_size_of(config: LlavaConfig) -> ModelSize:
    """The :class:`ModelSize` of a model's config (a trained or grown one)."""
    vision, text = config.vision_config, config.text_config
    return ModelSize(
        vision_hidden=vision.hidden_size, vision_layers=vision.num_hidden_layers,
        vision_heads=vision.num_attention_heads, vision_mlp=vision.intermediate_size,
        text_hidden=text.hidden_size, text_layers=text.num_hidden_layers, text_heads=text.num_attention_heads,
        text_kv_heads=text.num_key_value_heads, text_mlp=text.intermediate_size,
    )


def build_config(size: ModelSize, processor: LlavaProcessor) -> LlavaConfig:
    tokenizer = processor.tokenizer
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (PAD, BOS, EOS, IMAGE)}
    vision = CLIPVisionConfig(
        hidden_size=size.vision_hidden, intermediate_size=size.vision_mlp,
        num_hidden_layers=size.vision_layers, num_attention_heads=size.vision_heads,
        image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=size.vision_hidden, hidden_act="quick_gelu",
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=size.text_hidden, intermediate_size=size.text_mlp,
        num_hidden_layers=size.text_layers, num_attention_heads=size.text_heads,
        num_key_value_heads=size.text_kv_heads, max_position_embeddings=1024,
        pad_token_id=ids[PAD], bos_token_id=ids[BOS], eos_token_id=ids[EOS], tie_word_embeddings=False,
    )
    return LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=ids[IMAGE], image_seq_length=GRID * GRID,
        projector_hidden_act="gelu", vision_feature_select_strategy="default",
        # The last layer: the CLS token's attention there is trained to find the
        # objects (see the trainer), like CLIP's, for methods that read it.
        vision_feature_layer=-1,
        pad_token_id=ids[PAD],
    )


def build_model(size: ModelSize, processor: LlavaProcessor) -> LlavaForConditionalGeneration:
    """A randomly initialised model with its generation settings (greedy, stop at EOS)."""
    config = build_config(size, processor)
    model = LlavaForConditionalGeneration._from_config(config, attn_implementation="sdpa")
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = (
        config.text_config.bos_token_id, config.text_config.eos_token_id, config.text_config.pad_token_id,
    )
    gen.do_sample, gen.max_new_tokens = False, 4
    return model
