"""The family registry: every family brings all its pieces, and everything that differs
by family (adapters, tiny models, batches, geometry, costs, architectures, the test
family list) is read from it."""

from __future__ import annotations

import pytest
import torch

from vtprune import testing
from vtprune.bench.architectures import ARCHITECTURES, build, config_of, registered_architectures
from vtprune.bench.flops import vision_macs
from vtprune.bench.inputs import synthetic_batch
from vtprune.models import ADAPTERS, ModelAdapter, adapter_for, family_of, registered_families
from vtprune.models.family import Family, register

from helpers import FAMILIES

REGISTERED = registered_families()
TEST_MODELS = [(family, model) for family in REGISTERED for model in family.test_models]


def test_the_test_family_list_is_the_registry():
    assert FAMILIES == [model for _, model in TEST_MODELS]
    assert [m.name for m in testing.test_models()] == [f.name for f in FAMILIES]
    assert len({f.name for f in FAMILIES}) == len(FAMILIES)


def test_the_adapters_are_the_registered_families():
    assert ADAPTERS == tuple(family.adapter for family in REGISTERED)
    assert len({family.name for family in REGISTERED}) == len(REGISTERED)


@pytest.mark.parametrize("family", REGISTERED, ids=lambda f: f.name)
def test_every_family_brings_all_its_pieces(family: Family):
    assert issubclass(family.adapter, ModelAdapter) and family.name == family.adapter.family
    assert family.test_models, "a tiny model for the tests"
    for model in family.test_models:
        assert callable(model.build) and model.images
    fake = family.fake_inputs
    assert callable(fake.image) and callable(fake.inputs) and callable(fake.bench_image)
    assert callable(family.geometry.handles) and callable(family.geometry.tokens)
    assert callable(family.vision_macs)
    for architecture in family.architectures:
        assert architecture.name in ARCHITECTURES


def test_one_generic_geometry_tried_last():
    assert sum(family.geometry.generic for family in REGISTERED) <= 1


def test_the_command_lines_architectures_are_the_registered_ones():
    real, tiny = registered_architectures()
    assert ARCHITECTURES == (*real, *tiny)


def test_each_family_names_what_its_record_registers():
    """names.py (torch-free) and the registered records agree, family by family."""
    from vtprune.models.listing import all_names

    names = {n.name: n for n in all_names()}
    assert list(names) == [family.name for family in REGISTERED]
    for family in REGISTERED:
        listed = names[family.name]
        assert family.adapter.names is listed
        tiny = [m.architecture for m in family.test_models if m.architecture]
        assert sorted(listed.architectures) == sorted([a.name for a in family.architectures] + tiny)


def test_importing_the_families_names_needs_no_torch():
    import subprocess
    import sys

    code = (
        "import sys; from vtprune.models.listing import family_support; from vtprune.bench import architectures; "
        "family_support(); print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("family", "spec"), TEST_MODELS, ids=[m.name for _, m in TEST_MODELS])
def test_a_tiny_model_runs_on_its_fake_batch_and_bench_batch(family: Family, spec):
    model = spec.build(layers=2)
    assert family_of(model) is family and type(adapter_for(model)) is family.adapter
    batch = testing.make_batch(model, [[3, spec.image(0), 2], [spec.image(1), 4]])
    with torch.no_grad():
        assert model(**batch).logits.shape[:2] == batch["input_ids"].shape
        bench = synthetic_batch(model, 2, 9, (4, 6))
        assert model(**bench).logits.shape[:2] == bench["input_ids"].shape
    assert vision_macs(model, [16, 0]) > 0 and vision_macs(model, [0]) == 0


@pytest.mark.parametrize("name", [n for n in ARCHITECTURES if not n.startswith("tiny-")])
def test_a_real_scale_architecture_builds_its_family(name):
    with torch.device("meta"):
        model = build(name, layers=1, device="meta")
    assert family_of(model).adapter.handles_config(config_of(name, layers=1))
    assert model.config.text_config.num_hidden_layers == 1


def test_a_family_name_registers_once():
    with pytest.raises(ValueError, match="already registered"):
        register(Family(REGISTERED[0].adapter, (), REGISTERED[0].fake_inputs, REGISTERED[0].geometry, len))


def test_a_model_of_no_family_is_refused():
    with pytest.raises(TypeError, match="Linear"):
        family_of(torch.nn.Linear(2, 2))
