"""ATP's CLIP text tower: loaded with from_pretrained from a tiny random CLIP checkpoint
written by the test, and text relevance checked against a hand computation."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import CLIPConfig, CLIPModel, CLIPTextModelWithProjection, PreTrainedTokenizerFast

import vtprune
from vtprune.testing import IMAGE, Image, make_batch, tiny_llava, tiny_qwen2_vl


def save_word_tokenizer(directory, size: int) -> None:
    """A word-level tokenizer whose words are "w0" ... "w{size-1}" (token id = number),
    ending every text with an end token as CLIP's does (CLIP pools at the end token)."""
    vocab = {f"w{i}": i for i in range(size)} | {"[UNK]": size, "[PAD]": size + 1, "[EOS]": size + 2}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A [EOS]", special_tokens=[("[EOS]", size + 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    fast.save_pretrained(directory)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("towers")
    clip_dir, llm_dir = root / "clip", root / "llm"
    torch.manual_seed(1)
    config = CLIPConfig(
        text_config=dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64, eos_token_id=258, projection_dim=16),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=4, projection_dim=16),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(clip_dir)
    save_word_tokenizer(clip_dir, 256)
    save_word_tokenizer(llm_dir, 256)
    return clip_dir, llm_dir


def test_clip_relevance_equals_hand_computation(checkpoints):
    clip_dir, llm_dir = checkpoints
    model = tiny_llava()
    model.config._name_or_path = str(llm_dir)  # where the language model's tokenizer lives
    batch = make_batch(model, [[3, IMAGE, 7], [2, IMAGE, 5]])
    handle = vtprune.prune(model, "atp", keep=12, alpha=1.0, text_tower=str(clip_dir))
    with torch.no_grad():
        model(**batch)
    kept = handle.last_keep

    # By hand: final-layer patches, post layer norm, CLIP visual projection; the text
    # after the image decoded and encoded by the CLIP text model.
    clip = CLIPModel.from_pretrained(clip_dir)
    text_model = CLIPTextModelWithProjection.from_pretrained(clip_dir)
    llm_tok, clip_tok = (PreTrainedTokenizerFast.from_pretrained(d) for d in (llm_dir, clip_dir))
    tower = model.model.vision_tower
    with torch.no_grad():
        patches = tower(batch["pixel_values"], output_hidden_states=True).hidden_states[-1][:, 1:]
        image = torch.nn.functional.normalize(clip.visual_projection(tower.post_layernorm(patches)), dim=-1)
        for sample in range(2):
            ids = batch["input_ids"][sample]
            last_image = torch.nonzero(ids == model.config.image_token_id).max()
            words = llm_tok.decode(ids[last_image + 1 :].tolist())
            text = text_model(**clip_tok([words], return_tensors="pt")).text_embeds
            relevance = image[sample] @ torch.nn.functional.normalize(text, dim=-1)[0]
            assert kept[sample][0].tolist() == sorted(relevance.topk(12).indices.tolist())
    handle.remove()


def test_no_text_tower_warns_and_falls_back():
    model = tiny_llava()
    with pytest.warns(UserWarning, match="falls back to the language model's input embeddings"):
        handle = vtprune.prune(model, "atp", keep=0.25)
    handle.remove()


def test_text_tower_errors_are_raised_before_patching(checkpoints, tmp_path):
    clip_dir, llm_dir = checkpoints
    qwen = tiny_qwen2_vl()
    with pytest.raises(ValueError, match="available for LLaVA-1.5"):
        vtprune.prune(qwen, "atp", keep=0.25, text_tower=str(clip_dir))
    llava = tiny_llava()
    with pytest.raises(ValueError, match="name_or_path"):
        vtprune.prune(llava, "atp", keep=0.25, text_tower=str(clip_dir))
    llava.config._name_or_path = str(llm_dir)
    with pytest.raises(ValueError, match="could not be loaded"):
        vtprune.prune(llava, "atp", keep=0.25, text_tower=str(tmp_path / "missing"))
    for model in (qwen, llava):
        assert vtprune.active_handle(model) is None
        assert not model.model.language_model._forward_pre_hooks
    batch = make_batch(qwen, [[2, Image(4, 4), 3]])
    assert qwen(**batch).logits.shape[1] == batch["input_ids"].shape[1]


def official_cdpruner(image_features, image_embeds, text_embeds, count):
    """One image, as the official ``encode_images`` (CDPruner, LLaVA): projected features
    for similarity, CLIP embeddings for relevance (negated, min-max), greedy DPP MAP."""
    image_normalized = (image_features / image_features.norm(dim=-1, keepdim=True)).float()[None]
    similarity = image_normalized @ image_normalized.transpose(1, 2)
    image_embeds = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
    text_embeds = text_embeds / text_embeds.norm(dim=-1, keepdim=True)
    relevance = (-(image_embeds[None] @ text_embeds.t())).mean(dim=-1)
    relevance = (relevance - relevance.min() + 1e-6) / (relevance.max() - relevance.min())
    kernel = relevance.unsqueeze(2) * similarity * relevance.unsqueeze(1)
    n = kernel.shape[1]
    cis = torch.zeros((count, 1, n))
    di2s = torch.diagonal(kernel, dim1=1, dim2=2).clone()
    chosen = []
    for i in range(count):
        j = torch.argmax(di2s, dim=-1)
        chosen.append(int(j))
        eis = (kernel[torch.arange(1), j] - torch.einsum("tb,tbn->bn", cis[:i, torch.arange(1), j], cis[:i])) / torch.sqrt(
            di2s[torch.arange(1), j]
        ).unsqueeze(-1)
        cis[i, :, :] = eis
        di2s -= torch.square(eis)
        di2s[torch.arange(1), j] = -float("inf")
    return sorted(chosen)


@pytest.mark.parametrize("budget", [16, 32, 48])
def test_cdpruner_clip_relevance_selects_what_the_official_code_selects(checkpoints, budget):
    """Budgets below the kernel's rank (the tiny model's 64 feature dimensions): past it
    the official code divides by a zero gain; see the plain-tensor test for 64/128/192."""
    clip_dir, llm_dir = checkpoints
    model = tiny_llava(grid=24)  # 576 tokens per image
    model.config._name_or_path = str(llm_dir)
    batch = make_batch(model, [[3, IMAGE, 7], [2, IMAGE, 5]])
    handle = vtprune.prune(model, "cdpruner", keep=budget, text_tower=str(clip_dir))
    assert handle.config.relevance_source == "clip"
    with torch.no_grad():
        model(**batch)
    kept = handle.last_keep
    handle.remove()

    clip = CLIPModel.from_pretrained(clip_dir)
    text_model = CLIPTextModelWithProjection.from_pretrained(clip_dir)
    llm_tok, clip_tok = (PreTrainedTokenizerFast.from_pretrained(d) for d in (llm_dir, clip_dir))
    tower = model.model.vision_tower
    layer = model.config.vision_feature_layer
    with torch.no_grad():
        selected = tower(batch["pixel_values"], output_hidden_states=True).hidden_states[layer][:, 1:]
        image_embeds = clip.visual_projection(tower.post_layernorm(selected))
        features = model.model.multi_modal_projector(selected)
        for sample in range(2):
            ids = batch["input_ids"][sample]
            last_image = torch.nonzero(ids == model.config.image_token_id).max()
            words = llm_tok.decode(ids[last_image + 1 :].tolist())
            text = text_model(**clip_tok([words], return_tensors="pt")).text_embeds
            expected = official_cdpruner(features[sample], image_embeds[sample], text, budget)
            assert kept[sample][0].tolist() == expected


def test_cdpruner_clip_relevance_needs_a_text_tower():
    with pytest.raises(ValueError, match="text_tower"):
        vtprune.prune(tiny_llava(), "cdpruner", keep=0.25, relevance="clip")
