"""Compaction: drop tokens from a batch of sequences and left-pad them to one length.

Samples of a batch keep different numbers of tokens (different image counts or
sizes), so each compacted row is right-aligned and the new space on its left is
masked out, exactly like the left padding ``generate`` already uses. Everything here
is a gather with one index tensor; the only host sync is reading the new length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Compaction:
    """Where each destination slot of the compacted batch reads from.

    index:   (B, L') source position of each slot (a kept token, or filler at new pads)
    valid:   (B, L') False at the left pads the compaction introduced
    length:  L', the compacted length
    removed: whether any token was dropped at all (False means index is the identity)
    content: (B, L') source position of the token each slot holds when a stage
             reordered its kept tokens (see :meth:`reordered`); ``None``: ``index``
    """

    index: torch.Tensor
    valid: torch.Tensor
    length: int
    removed: bool
    content: torch.Tensor | None = None

    def gather(self, x: torch.Tensor, seq_dim: int) -> torch.Tensor:
        """Gather ``x`` along ``seq_dim``; dims before it are batch-like and broadcast.

        Works for embeddings (B, L, D) with ``seq_dim=1`` and for position ids
        (B, L) or (R, B, L) with ``seq_dim=-1``. What belongs to a slot (position ids,
        RoPE tables, the mask) is gathered with this, what belongs to a token (its
        features, which token it is) with :meth:`gather_tokens`.
        """
        return _gather(x, seq_dim, self.index)

    def gather_tokens(self, x: torch.Tensor, seq_dim: int) -> torch.Tensor:
        """As :meth:`gather`, with the tokens in the slots a stage ordered them into."""
        return _gather(x, seq_dim, self.index if self.content is None else self.content)

    def reordered(self, moves: tuple[torch.Tensor, torch.Tensor] | None, length: int) -> "Compaction":
        """This compaction with the kept tokens at flat ``sources`` of the (B, length)
        sequence moved into the slots of flat ``destinations`` (the same positions,
        permuted); ``None``: no move."""
        if moves is None:
            return self
        destinations, sources = moves
        batch = self.index.shape[0]
        source = torch.arange(batch * length, device=self.index.device)
        source[destinations.reshape(-1)] = sources.reshape(-1)
        rows = torch.arange(batch, device=self.index.device)[:, None] * length
        content = (source.view(batch, length) - rows).gather(1, self.index)
        return Compaction(self.index, self.valid, self.length, self.removed, content)

    def mask(self, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """The compacted 2-D attention mask (``None`` stays ``None`` if nothing moved)."""
        if attention_mask is None:
            # An explicit mask is required once tokens are gone: with no mask and
            # position ids that skip values, transformers takes the batch for packed
            # sequences and builds a block-diagonal mask.
            return None if not self.removed else self.valid.long()
        return self.gather(attention_mask, seq_dim=-1) * self.valid.to(attention_mask.dtype)


def _gather(x: torch.Tensor, seq_dim: int, index: torch.Tensor) -> torch.Tensor:
    """``x`` gathered along ``seq_dim`` by the (B, L') ``index``, leading dims broadcast."""
    seq_dim = seq_dim % x.dim()
    # Align the (B, L') index with x: leading dims broadcast, trailing dims expand.
    index = index.view((1,) * (seq_dim - 1) + tuple(index.shape) + (1,) * (x.dim() - seq_dim - 1))
    index = index.expand(x.shape[:seq_dim - 1] + (-1, -1) + x.shape[seq_dim + 1:])
    return torch.gather(x, seq_dim, index)


def plan_compaction(keep: torch.Tensor) -> Compaction:
    """A compaction keeping the ``True`` entries of ``keep`` (B, L), in order."""
    batch, length = keep.shape
    kept = keep.sum(dim=1)
    new_length, fewest = (int(v) for v in torch.stack((kept.max(), kept.min())).tolist())
    if fewest == length:
        index = torch.arange(length, device=keep.device).expand(batch, length)
        return Compaction(index, torch.ones_like(keep), length, removed=False)
    # Stable sort puts kept positions first, in their original order.
    order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)
    slot = torch.arange(new_length, device=keep.device)
    rank = slot[None, :] - (new_length - kept)[:, None]  # < 0 on the new left pads
    valid = rank >= 0
    index = order.gather(1, rank.clamp(min=0))
    return Compaction(index, valid, new_length, removed=True)
