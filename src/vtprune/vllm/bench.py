"""Serving speed of pruned models under vLLM, as ratios against the unpruned model
served in the same run::

    python -m vtprune.vllm.bench                       # the bundled model, on this machine
    python -m vtprune.vllm.bench --llm 768x6           # its vision tower, a random 768-wide 6-layer LLM
    python -m vtprune.vllm.bench --model llava-hf/llava-1.5-7b-hf --methods divprune,visionzip --keep 64

Each variant (``stock`` first, then each method) gets its own engine; its batch of chat
requests (proving-ground images and questions, through the model's chat template) is
run ``--warmup`` times, then ``--repeats`` times for the time to the first token of the
whole batch (``max_tokens=1``: prefill, vision tower included) and for the whole
generation (``--max-tokens``). Figures are medians with their spread (the
interquartile range over the median); a ratio whose spread is above ``--readable``
is marked ``~`` (too noisy to read). "ideal" is the ratio of the language model's
prefill MACs (:mod:`vtprune.bench.flops`, from the prompt lengths vLLM reports), what
the time ratio would be if nothing but the language model's compute counted. Accuracy
is the share of first words that are the proving ground's answers (meaningful on the
bundled model only: ``--llm`` gives random weights).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return q[1], (q[2] - q[0]) / q[1] if q[1] else 0.0


def _conversations(examples: list) -> list[list[dict[str, Any]]]:
    import base64
    import io

    def url(image) -> str:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

    return [
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url(e.image)}},
                                      {"type": "text", "text": e.question}]}]
        for e in examples
    ]


def random_llm_checkpoint(spec: str, out: Path) -> Path:
    """The bundled checkpoint with its language model replaced by a random-weight one of
    ``WIDTHxLAYERS`` (head dim 64, MLP 8/3 wide), so that the language model dominates
    the prefill as in real VLMs; the tower, projector input, tokenizer and processor stay."""
    import torch
    import transformers as tf

    from vtprune import proving_ground as pg

    width, layers = (int(v) for v in spec.lower().split("x"))
    path = out / f"checkpoint-llm-{width}x{layers}"
    if (path / "config.json").exists():
        return path
    config = tf.AutoConfig.from_pretrained(pg.checkpoint_path())
    text = config.text_config
    text.hidden_size, text.num_hidden_layers = width, layers
    text.num_attention_heads = text.num_key_value_heads = width // 64
    text.head_dim, text.intermediate_size = 64, (8 * width // 3 + 63) // 64 * 64
    torch.manual_seed(0)
    model = tf.LlavaForConditionalGeneration(config)
    model.save_pretrained(path)
    tf.AutoProcessor.from_pretrained(pg.checkpoint_path()).save_pretrained(path)
    return path


def llm_macs(model: str, prompt_lengths: list[int]) -> int:
    import transformers as tf

    from vtprune.bench.flops import language_layer, prefill_macs

    text = tf.AutoConfig.from_pretrained(model).text_config
    layer = language_layer(text)
    return sum(prefill_macs(layer, [n] * text.num_hidden_layers) for n in prompt_lengths)


def run_variant(model: str, method: str | None, keep: float | int, conversations, answers, args) -> dict[str, Any]:
    from vllm import LLM, SamplingParams

    import vtprune.vllm
    from vtprune.eval.proving import first_word

    kwargs = vtprune.vllm.engine_kwargs(method, keep=keep) if method else {}
    llm = LLM(model=model, enforce_eager=args.enforce_eager, dtype=args.dtype, max_model_len=args.max_model_len,
              max_num_seqs=len(conversations), gpu_memory_utilization=args.gpu_memory_utilization, seed=0, **kwargs)
    try:
        # the bundled model's chat template has no BOS, which its prompts start with
        tokenization = {"add_special_tokens": True} if args.model is None else None
        first = SamplingParams(temperature=0, max_tokens=1)
        whole = SamplingParams(temperature=0, max_tokens=args.max_tokens)

        def timed(params) -> tuple[float, list]:
            # a fresh prompt cache each time: every repetition encodes and prefills again
            llm.reset_prefix_cache()
            llm.reset_mm_cache()
            start = time.perf_counter()
            outputs = llm.chat(conversations, params, use_tqdm=False, tokenization_kwargs=tokenization)
            return time.perf_counter() - start, outputs

        for _ in range(args.warmup):
            timed(whole)
        ttft = [timed(first)[0] for _ in range(args.repeats)]
        runs = [timed(whole) for _ in range(args.repeats)]
        outputs = runs[-1][1]
        predictions = [first_word(o.outputs[0].text) for o in outputs]
        return {
            "variant": method or "stock",
            "prompt_tokens": sum(len(o.prompt_token_ids) for o in outputs),
            "llm_macs": llm_macs(model, [len(o.prompt_token_ids) for o in outputs]),
            "generated_tokens": sum(len(o.outputs[0].token_ids) for o in outputs),
            "batch_ttft_s": ttft,
            "batch_generate_s": [seconds for seconds, _ in runs],
            "accuracy": sum(p == a for p, a in zip(predictions, answers)) / len(answers),
        }
    finally:
        del llm
        gc.collect()


def table(rows: list[dict[str, Any]], readable: float) -> str:
    base = rows[0]
    b_ttft, _ = _quartiles(base["batch_ttft_s"])
    b_gen, _ = _quartiles(base["batch_generate_s"])
    lines = [f"{'variant':<12}{'prompt tok':>11}{'TTFT':>10}{'speed-up':>10}{'ideal':>8}{'generate':>10}{'speed-up':>10}"
             f"{'accuracy':>10}"]
    for row in rows:
        ttft, ttft_spread = _quartiles(row["batch_ttft_s"])
        gen, gen_spread = _quartiles(row["batch_generate_s"])

        def ratio(reference: float, value: float, spread: float) -> str:
            mark = "~" if spread > readable else " "
            return f"{mark}{reference / value:.2f}x"

        lines.append(
            f"{row['variant']:<12}{row['prompt_tokens']:>11}{ttft * 1e3:>8.0f}ms{ratio(b_ttft, ttft, ttft_spread):>10}"
            f"{base['llm_macs'] / row['llm_macs']:>7.2f}x"
            f"{gen * 1e3:>8.0f}ms{ratio(b_gen, gen, gen_spread):>10}{row['accuracy']:>10.1%}"
        )
    lines.append(f"median of the repetitions; speed-up = stock time / variant time; ideal = stock / variant "
                 f"language-model prefill MACs; ~ = spread (IQR / median) above {readable:.0%} in this variant's "
                 "times, too noisy to read")
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "python -m vtprune.vllm.bench") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model path or name (default: the bundled proving-ground model)")
    parser.add_argument("--llm", default=None, metavar="WIDTHxLAYERS",
                        help="serve the bundled model with a random-weight language model of this shape, e.g. 768x6")
    parser.add_argument("--methods", default="divprune,visionzip,uniform", help="comma-separated servable methods")
    parser.add_argument("--keep", default="64", help="budget: a token count (64) or a share of the image (0.111)")
    parser.add_argument("--requests", type=int, default=16, help="requests in the batch (default 16)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per figure (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument("--max-tokens", type=int, default=8, help="tokens generated per request (default 8)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    parser.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--readable", type=float, default=0.1, help="largest spread printed as a plain figure")
    parser.add_argument("-o", "--out", default="vtprune-vllm-bench", help="folder for vllm_bench.json")
    args = parser.parse_args(argv)

    import vtprune.vllm
    from vtprune.config import validate_keep

    try:
        keep = validate_keep(int(args.keep) if args.keep.isdigit() else float(args.keep))
    except (TypeError, ValueError) as error:
        parser.error(f"--keep: {error}")
    methods = [m for m in args.methods.split(",") if m]
    for method in methods:
        try:
            vtprune.vllm.engine_kwargs(method, keep=keep)
        except ValueError as error:
            parser.error(f"--methods: {error}")
    if args.llm is not None and (args.model is not None or not re.fullmatch(r"\d+x\d+", args.llm.lower())
                                 or int(args.llm.lower().split("x")[0]) % 64):
        parser.error("--llm: WIDTHxLAYERS with WIDTH a multiple of 64 (e.g. 768x6), without --model")
    for name in ("requests", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: must be at least 1")

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vtprune import proving_ground as pg

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = args.model or str(random_llm_checkpoint(args.llm, out) if args.llm else pg.checkpoint_path())
    examples = pg.make_split("test", args.requests)
    conversations = _conversations(examples)
    answers = [e.answer.lower() for e in examples]
    rows = [run_variant(model, m, keep, conversations, answers, args) for m in [None, *methods]]
    print(table(rows, args.readable))
    (out / "vllm_bench.json").write_text(json.dumps({"model": model, "settings": vars(args), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out / 'vllm_bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
