"""The word-level tokenizer of the proving-ground model.

One id per word of :mod:`.vocabulary`, with LLaVA's special tokens. ``<image>`` is an
added special token, so the 576 copies a ``LlavaProcessor`` writes into the prompt
split into 576 ids even though nothing separates them.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from .vocabulary import all_words

PAD, BOS, EOS, UNK, IMAGE = "<pad>", "<s>", "</s>", "<unk>", "<image>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK, IMAGE)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh tokenizer: ids 0-4 are the special tokens, then the words in order.

    Words are case-sensitive ("A" is a glyph, "a" an article); "?" and ":" are
    words of their own; whitespace, newlines included, only separates words.
    """
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in all_words():
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with single spaces
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE},
        padding_side="left",  # generation pads on the left
        model_max_length=1024,
    )
    return tokenizer
