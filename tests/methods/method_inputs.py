"""Inputs for method tests: deterministic random signals, and a runner that applies a
method's stages the way the runtime does (gather the current tokens, sort the kept
indices, write merged features back) without a model."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import torch

from vtprune.config import PruneConfig
from vtprune.registry import ModelShape, Selection, method_for_config
from vtprune.runtime.stage_runner import check_selection
from vtprune.signals import Signals, parse_signal

# Axis of the token dimension of each signal; text-only signals have none.
TOKEN_AXIS = {"attn_rows": 2}
TEXT_ONLY = {"text_embeds", "text_mask", "text_hidden", "text_hidden_norm", "text_keys_rope", "entry_visual"}  # not indexed by current tokens
TEXT_ROWS = ("text_embeds", "attn_rows", "text_hidden", "text_hidden_norm", "text_keys_rope")


@dataclass
class SignalBank:
    """Every signal a method may ask for, drawn on first use from a seed and the signal's
    name, for ``images`` images on a ``grid``. ``text_lengths`` gives each image's real
    instruction length (the rows are right-padded to the longest)."""

    images: int = 3
    grid: tuple[int, int] = (6, 8)
    dim: int = 16
    key_dim: int = 8
    text_lengths: tuple[int, ...] = (5, 3, 4)
    seed: int = 0
    dtype: torch.dtype = torch.float32
    device: str = "cpu"
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    def text_mask(self) -> torch.Tensor:
        lengths = torch.tensor(self.text_lengths[: self.images])
        return torch.arange(int(lengths.max()))[None, :] < lengths[:, None]

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.tensors:
            self.tensors[name] = self._draw(name)
        return self.tensors[name]

    def __setitem__(self, name: str, value: torch.Tensor) -> None:
        self.tensors[name] = value

    def _draw(self, name: str) -> torch.Tensor:
        # Drawn on the CPU so that every device sees the same values.
        return self._draw_on_cpu(name).to(self.device)

    def _draw_on_cpu(self, name: str) -> torch.Tensor:
        base, _ = parse_signal(name)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(name.encode()))
        i, n, t = self.images, self.num_tokens, len(self.text_mask()[0])
        mask = self.text_mask()

        def normal(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=gen).to(self.dtype)

        if base == "text_mask":
            return mask
        if base in ("visual", "hidden", "hidden_norm", "entry_visual"):
            return normal(i, n, self.dim)
        if base in ("text_embeds", "text_hidden", "text_hidden_norm"):
            return normal(i, t, self.dim) * mask[..., None]
        if base == "text_keys_rope":
            return normal(i, t, self.key_dim) * mask[..., None]
        if base in ("vision_keys", "keys", "keys_rope", "vision_features"):
            return normal(i, n, self.key_dim)
        if base in ("vision_saliency", "attn_last", "attn_last_next"):
            return torch.softmax(torch.randn(i, n, generator=gen) * 2, dim=-1).to(self.dtype)
        if base == "text_relevance":
            return (torch.rand(i, n, generator=gen) * 2 - 1).to(self.dtype)
        if base == "attn_rows":
            rows = torch.softmax(torch.randn(i, t, n, generator=gen) * 2, dim=-1)
            return (rows * mask[..., None]).to(self.dtype)
        raise KeyError(name)

    def image(self, index: int) -> SignalBank:
        """The same signals for image ``index`` alone, its instruction unpadded."""
        length = self.text_lengths[index]
        alone = SignalBank(
            images=1,
            grid=self.grid,
            dim=self.dim,
            key_dim=self.key_dim,
            text_lengths=(length,),
            seed=self.seed,
            dtype=self.dtype,
            device=self.device,
        )
        for name, tensor in self.tensors.items():
            part = tensor[index : index + 1]
            if parse_signal(name)[0] in (*TEXT_ROWS, "text_mask"):
                part = part[:, :length]
            alone.tensors[name] = part
        return alone


def _current(tensor: torch.Tensor, name: str, token_index: torch.Tensor) -> torch.Tensor:
    """``tensor`` restricted to the tokens in ``token_index`` (I, n)."""
    base, _ = parse_signal(name)
    if base in TEXT_ONLY:
        return tensor
    axis = TOKEN_AXIS.get(base, 1)
    shape = list(tensor.shape)
    shape[axis] = token_index.shape[1]
    index = token_index.reshape(token_index.shape[0], *([1] * (axis - 1)), -1, *([1] * (tensor.dim() - axis - 1)))
    return tensor.gather(axis, index.expand(shape))


@dataclass
class Outcome:
    keep: torch.Tensor  # (I, k) sorted indices into the full grid
    visual: torch.Tensor | None  # (I, k, D) the kept tokens' features after merges, if ``visual`` was read
    stage_sizes: list[int]  # tokens kept after each stage


def resolved(config: PruneConfig, num_layers: int = 32, tokens: int | None = None) -> PruneConfig:
    """The config as ``vtprune.prune`` applies it to a model of this depth and image size."""
    return method_for_config(config).resolve(config, ModelShape(num_layers, tokens))


def stage_needs(config: PruneConfig, num_layers: int = 32) -> list[set[str]]:
    """Per stage, the signals it declares plus the ``text_mask`` the runtime adds."""
    result = []
    for stage in method_for_config(config).stages(config, num_layers):
        names = set(stage.needs)
        if any(parse_signal(x)[0] in TEXT_ROWS for x in names):
            names.add("text_mask")
        result.append(names)
    return result


def draw_all(config: PruneConfig, bank: SignalBank, num_layers: int = 32) -> SignalBank:
    """Draw every signal ``config``'s stages read, so that ``bank.image(i)`` copies them."""
    for names in stage_needs(resolved(config, num_layers, bank.num_tokens), num_layers):
        for name in names:
            bank[name]
    return bank


def run_method(config: PruneConfig, bank: SignalBank, num_layers: int = 32) -> Outcome:
    """Apply ``config``'s stages to ``bank``'s images as the runtime would."""
    config = resolved(config, num_layers, bank.num_tokens)
    stages = method_for_config(config).stages(config, num_layers)
    n = bank.num_tokens
    token_index = torch.arange(n, device=bank.device).expand(bank.images, n)
    budget = config.budget(n)
    sizes = []
    for stage, names in zip(stages, stage_needs(config, num_layers), strict=True):
        given = {name: _current(bank[name], name, token_index) for name in names}
        signals = Signals.from_tensors(bank.grid, token_index=token_index, **given)
        selection = check_selection(
            stage.select(signals, budget if stage.share is None else stage.share(budget, n, config), config),
            bank.images, token_index.shape[1], stage.where,
        )
        keep, order = selection.keep.sort(dim=1)
        if selection.features is not None:
            features = selection.features.gather(1, order[..., None].expand(-1, -1, selection.features.shape[-1]))
            full = bank["visual"].clone()
            full.scatter_(1, token_index.gather(1, keep)[..., None].expand_as(features), features.to(full.dtype))
            bank["visual"] = full
        token_index = token_index.gather(1, keep)
        sizes.append(token_index.shape[1])
    visual = _current(bank["visual"], "visual", token_index) if "visual" in bank.tensors else None
    return Outcome(token_index, visual, sizes)


def signals_for(bank: SignalBank, *names: str) -> Signals:
    """Signals over all of ``bank``'s tokens with exactly ``names`` declared."""
    wanted = set(names)
    if any(parse_signal(x)[0] in TEXT_ROWS for x in wanted):
        wanted.add("text_mask")
    return Signals.from_tensors(bank.grid, **{name: bank[name] for name in wanted})


def as_selection(out: Selection | torch.Tensor) -> Selection:
    return out if isinstance(out, Selection) else Selection(out)
