"""The KV cache argument is found under the name the installed transformers uses."""

import inspect

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaModel

from vtprune.compat import cache_argument, cache_in, cache_of


def test_the_name_is_the_one_models_and_decoder_layers_take():
    assert cache_argument() in inspect.signature(LlamaModel.forward).parameters
    assert cache_argument() in inspect.signature(LlamaDecoderLayer.forward).parameters


def test_cache_in_reads_either_name_and_none_when_absent():
    cache = object()
    assert cache_in({"cache": cache}) is cache
    assert cache_in({"past_key_values": cache}) is cache
    assert cache_in({"cache": None, "past_key_values": cache}) is cache
    assert cache_in({"attention_mask": None}) is None


def test_cache_of_returns_the_cache_a_forward_fills():
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1)
    model = LlamaForCausalLM(config).eval()
    out = model(input_ids=torch.tensor([[1, 2, 3]]), use_cache=True)
    assert cache_of(out).get_seq_length() == 3
