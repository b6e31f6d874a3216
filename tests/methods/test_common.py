"""Properties every method built here must have: shape, unique in-range indices,
batch equals each image alone, any float dtype, keep-everything, JSON round trip,
registration, and clear errors for bad config values."""

from __future__ import annotations

import pytest
import torch

from vtprune.config import PruneConfig
from vtprune.pruning_methods.atp import ATPConfig
from vtprune.pruning_methods.cdpruner import CDPrunerConfig
from vtprune.pruning_methods.coast import COASTConfig
from vtprune.pruning_methods.dart import DARTConfig
from vtprune.pruning_methods.divprune import DivPruneConfig
from vtprune.pruning_methods.fastv import FastVConfig
from vtprune.pruning_methods.pdrop import PDropConfig, scaled_layers, solve_ratio, stage_count
from vtprune.pruning_methods.sparsevlm import SparseVLMConfig, schedule
from vtprune.pruning_methods.sppruner import SPprunerConfig
from vtprune.pruning_methods.sts import STSConfig
from vtprune.pruning_methods.visionzip import VisionZipConfig
from vtprune.pruning_methods.zspaprune import ZSPAPruneConfig
from vtprune.registry import get_method, method_for_config

from .method_inputs import SignalBank, draw_all, run_method, resolved

KEEP = 12  # of the bank's 6 x 8 = 48 tokens
NUM_LAYERS = 32

CONFIGS = [
    ZSPAPruneConfig(keep=KEEP),
    SPprunerConfig(keep=KEEP),
    ATPConfig(keep=KEEP),
    ATPConfig(keep=KEEP, alpha=0.0),
    ATPConfig(keep=KEEP, alpha=1.0),
    VisionZipConfig(keep=KEEP),
    DivPruneConfig(keep=KEEP),
    CDPrunerConfig(keep=KEEP),
    CDPrunerConfig(keep=KEEP, theta=0.5),
    STSConfig(keep=KEEP),
    STSConfig(keep=KEEP, saliency="norm", sigma_p=3.0),
    COASTConfig(keep=KEEP),
    FastVConfig(keep=KEEP),
    PDropConfig(keep=KEEP, layers=(2, 8, 16)),  # the default layers cannot average 12 of 48 tokens
    PDropConfig(keep=KEEP, ratio=0.5),
    DARTConfig(keep=KEEP),
    SparseVLMConfig(keep=KEEP),
    SparseVLMConfig(keep=KEEP, recycle=0.0),
]


def config_id(config: PruneConfig) -> str:
    changed = {k: v for k, v in config.to_dict().items() if k not in ("keep", "method", "positions")}
    defaults = type(config)().to_dict()
    extra = ",".join(f"{k}={v}" for k, v in changed.items() if defaults[k] != v)
    return config.method + (f"[{extra}]" if extra else "")


def expected_sizes(config: PruneConfig, n: int) -> list[int]:
    """Tokens each stage keeps, as documented by the method."""
    budget = config.budget(n)
    if isinstance(config, STSConfig):
        return [min(n, round(config.pool_factor * budget)), budget]
    if isinstance(config, PDropConfig):
        layers = scaled_layers(resolved(config, NUM_LAYERS, n).layers, NUM_LAYERS)
        ratio = config.ratio if config.ratio is not None else solve_ratio(budget, n, layers, NUM_LAYERS)
        return [stage_count(n, ratio, s + 1) for s in range(len(layers))]
    if isinstance(config, SparseVLMConfig):
        return schedule(n, budget, 3, config.recycle)
    return [budget]


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_selection_shape_unique_and_in_range(config: PruneConfig) -> None:
    bank = SignalBank()
    outcome = run_method(config, bank, NUM_LAYERS)
    assert outcome.stage_sizes == expected_sizes(config, bank.num_tokens)
    keep = outcome.keep
    assert keep.shape == (bank.images, outcome.stage_sizes[-1])
    assert keep.dtype == torch.long
    assert int(keep.min()) >= 0 and int(keep.max()) < bank.num_tokens
    for row in keep:
        assert row.unique().numel() == row.numel()


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_batch_equals_each_image_alone(config: PruneConfig) -> None:
    bank = draw_all(config, SignalBank(seed=3), NUM_LAYERS)
    alone = [bank.image(i) for i in range(bank.images)]  # copies, before any merge writes back
    batched = run_method(config, bank, NUM_LAYERS)
    for i, single in enumerate(alone):
        outcome = run_method(config, single, NUM_LAYERS)
        assert torch.equal(outcome.keep[0], batched.keep[i])
        if batched.visual is not None:
            torch.testing.assert_close(outcome.visual[0], batched.visual[i])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_half_precision_inputs(config: PruneConfig, dtype: torch.dtype) -> None:
    bank = SignalBank(seed=5, dtype=dtype)
    outcome = run_method(config, bank, NUM_LAYERS)
    assert outcome.keep.shape == (bank.images, expected_sizes(config, bank.num_tokens)[-1])
    for row in outcome.keep:
        assert row.unique().numel() == row.numel()
    if outcome.visual is not None:
        assert outcome.visual.dtype == dtype and torch.isfinite(outcome.visual.float()).all()


ACCELERATORS = [
    name for name, there in (("cuda", torch.cuda.is_available()), ("mps", torch.backends.mps.is_available())) if there
]


@pytest.mark.skipif(not ACCELERATORS, reason="no accelerator on this machine")
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_accelerator_selects_what_the_cpu_selects(config: PruneConfig) -> None:
    for device in ACCELERATORS:
        on_cpu = run_method(config, SignalBank(seed=13), NUM_LAYERS)
        on_device = run_method(config, SignalBank(seed=13, device=device), NUM_LAYERS)
        assert on_device.keep.device.type == device
        assert torch.equal(on_device.keep.cpu(), on_cpu.keep)
        if on_cpu.visual is not None:
            torch.testing.assert_close(on_device.visual.cpu(), on_cpu.visual, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "config", [c for c in CONFIGS if not (isinstance(c, PDropConfig) and c.ratio is not None)], ids=config_id
)
def test_keep_everything_is_the_identity(config: PruneConfig) -> None:
    bank = SignalBank(seed=7)
    original = bank["visual"].clone()
    whole = type(config).from_dict({**config.to_dict(), "keep": 1.0})
    outcome = run_method(whole, bank, NUM_LAYERS)
    assert torch.equal(outcome.keep, torch.arange(bank.num_tokens).expand(bank.images, -1))
    assert torch.equal(bank["visual"], original)


@pytest.mark.filterwarnings("ignore:pdrop")  # one token is below what PDrop's first segment costs
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_one_token_budget(config: PruneConfig) -> None:
    one = type(config).from_dict({**config.to_dict(), "keep": 1})
    if isinstance(one, PDropConfig) and one.ratio is None:
        # The first stage follows at least one layer that sees every token: no PDrop
        # schedule averages a single token over the layers.
        with pytest.raises(ValueError, match="keep=1"):
            run_method(one, SignalBank(seed=9), NUM_LAYERS)
        return
    outcome = run_method(one, SignalBank(seed=9), NUM_LAYERS)
    assert outcome.keep.shape == (3, expected_sizes(one, 48)[-1])


NON_DEFAULT = [
    ZSPAPruneConfig(keep=64, relevance_fraction=0.3, positions="compact"),
    SPprunerConfig(keep=0.111, lam=0.25, subject_fraction=0.5),
    ATPConfig(keep=128, alpha=0.7, text_tower="openai/clip-vit-large-patch14-336"),
    VisionZipConfig(keep=192, contextual_ratio=0.25),
    DivPruneConfig(keep=0.5),
    CDPrunerConfig(keep=32, theta=0.75),
    STSConfig(keep=64, layer=3, pool_factor=3.0, saliency="norm", w_p=0.5, w_f=2.0, sigma_p=4.0, sigma_f=0.25),
    COASTConfig(keep=100, layer=4, rho=0.6, a_min=0.1, a_max=0.3),
    FastVConfig(keep=0.25, layer=3),
    PDropConfig(keep=128, layers=(2, 8, 16), ratio=0.6),
    DARTConfig(keep=77, layer=3, image_pivots=2, text_pivots=3, hidden="raw"),
    SparseVLMConfig(keep=128, layers=(2, 6, 12), recycle=0.2, positions="original"),
    VisionZipConfig(keep=64, merge="mean"),
]


@pytest.mark.parametrize("config", NON_DEFAULT, ids=lambda c: c.method)
def test_config_json_round_trip(config: PruneConfig, tmp_path) -> None:
    assert PruneConfig.from_json(config.to_json()) == config
    assert type(config).from_json(config.to_json()) == config
    config.save(tmp_path / "config.json")
    assert PruneConfig.load(tmp_path / "config.json") == config


@pytest.mark.parametrize("config", NON_DEFAULT, ids=lambda c: c.method)
def test_registered_under_its_name(config: PruneConfig) -> None:
    method = get_method(config.method)
    assert method.config is type(config) and method_for_config(config) is method
    described = method.describe()
    assert described["paper"] and described["summary"]
    assert all(text for text in type(config).field_help().values())


BAD_VALUES = [
    (ZSPAPruneConfig, {"relevance_fraction": 1.5}, ValueError, "relevance_fraction"),
    (SPprunerConfig, {"lam": -0.1}, ValueError, "lam"),
    (SPprunerConfig, {"subject_fraction": "half"}, TypeError, "subject_fraction"),
    (ATPConfig, {"alpha": float("nan")}, ValueError, "alpha"),
    (ATPConfig, {"text_tower": ""}, TypeError, "text_tower"),
    (VisionZipConfig, {"contextual_ratio": 2}, ValueError, "contextual_ratio"),
    (CDPrunerConfig, {"theta": 0.0}, ValueError, "theta"),
    (STSConfig, {"saliency": "cls"}, ValueError, "saliency"),
    (STSConfig, {"pool_factor": 0.5}, ValueError, "pool_factor"),
    (STSConfig, {"sigma_p": 0}, ValueError, "sigma_p"),
    (STSConfig, {"sigma_f": -1}, ValueError, "sigma_f"),
    (STSConfig, {"w_p": -1}, ValueError, "w_p"),
    (COASTConfig, {"a_min": 0.5, "a_max": 0.2}, ValueError, "a_min"),
    (COASTConfig, {"rho": True}, TypeError, "rho"),
    (COASTConfig, {"layer": 0}, ValueError, "layer"),
    (FastVConfig, {"layer": 2.0}, TypeError, "layer"),
    (PDropConfig, {"ratio": 0.0}, ValueError, "ratio"),
    (PDropConfig, {"layers": (16, 8)}, ValueError, "layers"),
    (PDropConfig, {"layers": (8, 40)}, ValueError, "layers"),
    (PDropConfig, {"layers": "8,16"}, TypeError, "layers"),
    (DARTConfig, {"image_pivots": 0}, ValueError, "image_pivots"),
    (DARTConfig, {"hidden": "rms"}, ValueError, "hidden"),
    (DivPruneConfig, {"keep": 0}, ValueError, "keep"),
    (VisionZipConfig, {"merge": "sum"}, ValueError, "merge"),
    (SparseVLMConfig, {"layers": (3, 7)}, ValueError, "layers"),
    (SparseVLMConfig, {"layers": (3, 2, 16)}, ValueError, "layers"),
    (SparseVLMConfig, {"recycle": 1.5}, ValueError, "recycle"),
]


@pytest.mark.parametrize("cls, kwargs, error, field", BAD_VALUES, ids=lambda x: getattr(x, "__name__", str(x)))
def test_bad_values_name_the_field(cls, kwargs, error, field) -> None:
    with pytest.raises(error, match=field):
        cls(**kwargs)
