"""A Hugging Face VLM with its processor, optionally pruned, answering prompts.

What evaluation needs from a model, whoever asks (vtprune's own evaluation or the
lmms-eval wrapper): greedy answers to image + text prompts in batches, stopping at
given strings, and the log-likelihood of a continuation, computed as decoding would
compute it (prompt first, then the continuation through the cache), so that pruning
selects on the prompt alone and scores never depend on aligning labels with a
shortened sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from .. import prune
from ..compat import cache_argument, cache_of


@dataclass
class PrunedVLM:
    """``model`` and ``processor``, with ``method`` at ``keep`` applied (None: unpruned)."""

    model: nn.Module
    processor: Any
    method: str | None = None
    keep: float | int | None = None
    options: dict = field(default_factory=dict)
    handle: Any = None

    def __post_init__(self) -> None:
        self.processor.tokenizer.padding_side = "left"
        # For the model's lifetime (the lmms-eval model of one method); a campaign over
        # many variants builds it unpruned and prunes around each run instead.
        if self.method is not None:
            self.handle = prune(self.model, self.method, keep=self.keep, **self.options)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt(self, text: str, images: int = 1, answer: str | None = None) -> str:
        """The model's own chat format (its processor's chat template, or LLaVA-1.5's
        "USER: <image>\\n... ASSISTANT:"), with ``images`` image slots before the text."""
        content = [{"type": "image"} for _ in range(images)] + [{"type": "text", "text": text}]
        messages = [{"role": "user", "content": content}]
        if getattr(self.processor, "chat_template", None):
            if answer is None:
                return self.processor.apply_chat_template(messages, add_generation_prompt=True)
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
            return self.processor.apply_chat_template(messages)
        slots = "<image>\n" * images
        return f"USER: {slots}{text} ASSISTANT:" + ("" if answer is None else f" {answer}")

    def _inputs(self, texts: list[str], images: list[list]) -> dict[str, torch.Tensor]:
        flat = [image for group in images for image in group]
        batch = self.processor(text=texts, images=flat or None, padding=True, return_tensors="pt")
        dtype = next(self.model.parameters()).dtype
        return {
            k: (v.to(self.device, dtype) if k == "pixel_values" else v.to(self.device)) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()
        }

    @torch.inference_mode()
    def generate(
        self, questions: Sequence[str], images: Sequence[Sequence], max_new_tokens: int = 16, until: Sequence[str] = ()
    ) -> list[str]:
        """Greedy answers, cut at the first of ``until``."""
        texts = [self.prompt(q, len(group)) for q, group in zip(questions, images)]
        batch = self._inputs(texts, [list(group) for group in images])
        tokenizer = self.processor.tokenizer
        out = self.model.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
        answers = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        return [_cut(answer, until).strip() for answer in answers]

    @torch.inference_mode()
    def loglikelihood(self, question: str, continuation: str, images: Sequence) -> "ContinuationScore":
        """log p(continuation | prompt), its token count, and whether greedy decoding
        would produce it.

        The prompt goes through the model first and the continuation is then fed through
        the cache, as decoding would: the visual tokens are selected on the prompt alone,
        so a method that reads the text never sees the answer it is scored on.
        """
        prompt = self.prompt(question, len(images))
        full = self._inputs([prompt + continuation], [list(images)])
        # The processor expands image placeholders: measure the prompt the same way.
        context = self._inputs([prompt], [list(images)])
        split = context["input_ids"].shape[1]
        target = full["input_ids"][:, split:]
        if target.numel() == 0:
            return ContinuationScore(0.0, 0, True)
        first = self.model(**context, use_cache=True)
        mask = torch.cat((context["attention_mask"], torch.ones_like(target)), dim=1)
        rest = self.model(input_ids=target, attention_mask=mask, use_cache=True,
                          **{cache_argument(): cache_of(first)})
        logits = torch.cat((first.logits[:, -1:], rest.logits[:, :-1]), dim=1)[0]
        scores = torch.log_softmax(logits.float(), dim=-1)
        picked = scores.gather(1, target[0, :, None].to(scores.device))[:, 0]
        greedy = bool((scores.argmax(-1) == target[0].to(scores.device)).all())
        return ContinuationScore(float(picked.sum()), target.shape[1], greedy)


@dataclass(frozen=True)
class ContinuationScore:
    logprob: float  # summed over the continuation's tokens
    tokens: int
    greedy: bool

    @property
    def mean_loss(self) -> float:
        """Mean negative log-likelihood per token (the language-modelling loss)."""
        return -self.logprob / self.tokens if self.tokens else 0.0


def _cut(text: str, until: Sequence[str]) -> str:
    for stop in until:
        if stop and stop in text:
            text = text.split(stop)[0]
    return text
