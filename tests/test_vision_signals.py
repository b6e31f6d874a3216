"""Vision-tower signals against references computed independently of vtprune."""

from __future__ import annotations

import pytest
import torch

import vtprune
from vtprune.testing import IMAGE, Image, make_batch, tiny_llava, tiny_qwen2_vl


def _call_signals(model, batch, names):
    handle = vtprune.prune(model, "visionzip", keep=0.5)  # a method that needs vision signals
    with torch.no_grad():
        model(**batch)
    session = handle._session
    call = session._vision_calls[-1]
    adapter = session.adapter
    out = {
        name: adapter.clip_patches(call, select_layer=True) if name == "clip_patches" else adapter.vision_signal(name, call)
        for name in names
    }
    handle.remove()
    return out


def test_llava_signals_equal_eager_attention_and_hidden_states():
    model, eager = tiny_llava(), tiny_llava(attn="eager")
    batch = make_batch(model, [[3, IMAGE, 4], [2, IMAGE, 2, IMAGE, 1]])
    got = _call_signals(model, batch, ["vision_saliency", "vision_keys", "clip_patches"])
    with torch.no_grad():
        out = eager.model.vision_tower(batch["pixel_values"], output_attentions=True, output_hidden_states=True)
        layer = eager.model.vision_tower.encoder.layers[-2]  # vision_feature_layer=-2 is its output
        keys = layer.self_attn.k_proj(layer.layer_norm1(out.hidden_states[-3]))
    torch.testing.assert_close(got["vision_saliency"], out.attentions[-2].mean(1)[:, 0, 1:], atol=1e-6, rtol=0)
    post_ln = eager.model.vision_tower.post_layernorm  # the patches CLIP's projection head reads
    torch.testing.assert_close(got["clip_patches"], post_ln(out.hidden_states[-2][:, 1:]), atol=1e-5, rtol=0)
    heads = layer.self_attn.num_heads  # keys averaged over heads: VisionZip's merge metric
    torch.testing.assert_close(got["vision_keys"], keys[:, 1:].unflatten(-1, (heads, -1)).mean(-2), atol=1e-5, rtol=0)
    assert got["vision_saliency"].shape == (3, 64)


@pytest.mark.parametrize("version", ["2", "2.5"])
def test_qwen_signals_are_per_token_in_raster_order(version):
    """Qwen2.5-VL's ViT runs on window-ordered patches. Undoing the order the way the
    signals do must turn the last block's output into what the merger turns into the
    model's own image features; saliency must equal a dense softmax per image."""
    model = tiny_qwen2_vl(version=version, layers=2)
    batch = make_batch(model, [[3, Image(8, 6), 4], [2, Image(4, 10), 1]])
    visual = model.model.visual
    seen = {}
    hooks = [
        visual.blocks[-1].attn.register_forward_pre_hook(
            lambda m, a, kw: seen.update(x=a[0], rope=kw["position_embeddings"], cu=kw["cu_seqlens"]), with_kwargs=True
        ),
        visual.blocks[-1].register_forward_hook(lambda m, a, out: seen.update(out=out)),
    ]
    got = _call_signals(model, batch, ["vision_saliency", "vision_keys"])
    for hook in hooks:
        hook.remove()
    adapter = vtprune.models.adapter_for(model)
    grid = batch["image_grid_thw"]

    with torch.no_grad():
        # The block output in raster order, merged, is the model's image features.
        units = seen["out"].view(-1, 4, seen["out"].shape[-1])
        natural = adapter._window_order_undone(units.flatten(1), grid).view(-1, seen["out"].shape[-1])
        merged = visual.merger(natural)
        expected_features = visual(batch["pixel_values"], grid_thw=grid).pooler_output
        torch.testing.assert_close(merged, expected_features, atol=1e-5, rtol=0)

        # Saliency: dense softmax of each image's patches, mean over queries and heads.
        attn = visual.blocks[-1].attn
        q, k, _ = attn.qkv(seen["x"]).view(seen["x"].shape[0], 3, attn.num_heads, -1).unbind(1)
        cos, sin = (t[:, None, :] for t in seen["rope"])
        rot = lambda x: torch.cat((-x[..., x.shape[-1] // 2 :], x[..., : x.shape[-1] // 2]), -1)  # noqa: E731
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        received = torch.cat([
            torch.softmax(torch.einsum("qhd,khd->hqk", q[a:b], k[a:b]) * attn.scaling, -1).mean((0, 1))
            for a, b in zip(seen["cu"][:-1].tolist(), seen["cu"][1:].tolist())
        ])
        per_token = adapter._window_order_undone(received.view(-1, 4).mean(1, keepdim=True), grid)[:, 0]
        keys_per_token = adapter._window_order_undone(k.mean(1).view(-1, 4, k.shape[2]).mean(1), grid)
    sizes = [48, 40]
    for image, (start, size) in enumerate(zip([0, 48], sizes)):
        torch.testing.assert_close(got["vision_saliency"][image, :size], per_token[start : start + size], atol=1e-6, rtol=0)
    # Keys are taken before RoPE, averaged over heads.
    raw_k = attn.qkv(seen["x"]).view(seen["x"].shape[0], 3, attn.num_heads, -1)[:, 1].mean(1)
    raw_per_token = adapter._window_order_undone(raw_k.view(-1, 4, raw_k.shape[-1]).mean(1), grid)
    torch.testing.assert_close(got["vision_keys"][1, :40], raw_per_token[48:88], atol=1e-5, rtol=0)
    assert not torch.allclose(raw_per_token, keys_per_token)


def test_vision_methods_run_through_generate_on_every_family():
    for model, image in [(tiny_llava(layers=4), IMAGE), (tiny_qwen2_vl(layers=4), Image(6, 6))]:
        batch = make_batch(model, [[3, image, 4]])
        for name in ("visionzip", "sts", "sppruner", "atp"):
            handle = vtprune.prune(model, name, keep=0.25)
            model.generate(**batch, max_new_tokens=2, do_sample=False)
            assert handle.stats.total_llm_input == vtprune.resolve_budget(0.25, 36 if image.rows else 64) * (
                2 if name == "sts" else 1
            )
            handle.remove()
