"""The command line: arguments and requests checked before any model is loaded."""

from __future__ import annotations

import subprocess
import sys

import pytest

import vtprune
from vtprune import preflight, proving_ground
from vtprune.cli import build_parser, main


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a command gets as far as loading the proving-ground model."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(proving_ground, "load", refuse)
    monkeypatch.setattr(proving_ground.checkpoint, "load", refuse)


@pytest.mark.parametrize(
    "argv, option",
    [
        (["eval", "--keep", "abc"], "--keep"),
        (["eval", "--keep", "0"], "--keep"),
        (["eval", "--keep", "2.5"], "--keep"),
        (["bench", "--keep", "abc"], "--keep"),
        (["show", "x.png", "--prompt", "p", "--method", "uniform", "--keep", "nan"], "--keep"),
        (["demo", "--keep", "-1"], "--keep"),
        (["eval", "--limit", "0"], "--limit"),
        (["eval", "--limit", "-3"], "--limit"),
        (["demo", "--questions", "0"], "--questions"),
        (["bench", "--batch", "0"], "--batch"),
    ],
)
def test_a_bad_argument_is_one_line_naming_the_option_and_the_accepted_values(argv, option, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"argument {option}" in err and ("token count" in err or "integer >= 1" in err)


def test_budgets_take_counts_and_ratios_everywhere():
    parser = build_parser()
    assert parser.parse_args(["demo", "--keep", "128"]).keep == 128
    assert parser.parse_args(["demo", "--keep", "0.5"]).keep == 0.5
    assert parser.parse_args(["eval", "--keep", "64", "1.0"]).keep == [64, 1.0]
    assert parser.parse_args(["bench", "-o", "there"]).out == "there"


@pytest.mark.parametrize("command", [["eval"], ["bench"], ["show", "x.png", "--prompt", "p"]])
def test_an_unknown_method_fails_before_any_model_is_loaded(command, no_model, capsys, tmp_path):
    assert main([*command, "--method", "nosuch", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "method must be one of" in err and "'nosuch'" in err
    assert not (tmp_path / "out").exists()


def test_a_method_named_that_cannot_run_on_the_model_is_an_error(no_model, capsys, tmp_path):
    # The proving-ground model has 4 decoder layers: pdrop's stages cannot average 0.222 down.
    with pytest.raises(ValueError) as expected:
        vtprune.validate(preflight.proving_ground_config(), "pdrop", keep=0.222)
    assert main(["eval", "--method", "pdrop", "--keep", "0.222", "-o", str(tmp_path)]) == 2
    assert str(expected.value) in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_a_layer_beyond_the_model_is_named_by_its_option(no_model, capsys, tmp_path):
    with pytest.raises(ValueError, match=r"layer must be in \[1, 3\] .* got 4"):
        vtprune.validate(preflight.proving_ground_config(), "fastv", keep=0.5, layer=4)


def test_every_method_notes_what_the_model_cannot_run_instead_of_failing(no_model):
    refused = preflight.check(None, [0.222], preflight.proving_ground_config)
    assert list(refused) == [("pdrop", 0.222)]
    assert "cannot be met" in refused[("pdrop", 0.222)]
    with pytest.raises(preflight.RequestError, match="--keep"):
        preflight.check_budgets(["uniform"], [0])


def test_version_and_python_dash_m(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"vtprune {vtprune.__version__}"
    done = subprocess.run([sys.executable, "-m", "vtprune", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"vtprune {vtprune.__version__}"


def test_the_command_line_and_the_package_import_neither_torch_nor_transformers():
    code = (
        "import sys, vtprune, vtprune.cli; vtprune.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_listing_the_methods_and_refusing_an_unknown_one_import_neither_torch_nor_transformers():
    code = (
        "import sys, contextlib, io; from vtprune.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "    codes = [main(['methods']), main(['methods', '-v']), main(['methods', '--json']),\n"
        "             main(['eval', '--method', 'nosuch'])]\n"
        "import vtprune; vtprune.list_methods(); vtprune.FastVConfig(layer=3).stages(32)\n"
        "print(codes, sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[0, 0, 0, 2] []"


def test_the_family_table_of_the_listing_is_the_adapters():
    from vtprune import models
    from vtprune.models import listing

    assert listing.family_support() == models.family_support()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--keep", "64", "128"], "--keep: one budget with --engine vllm"),
        (["--method", "fastv"], "--methods: vtprune: method 'fastv' prunes inside the language model"),
        (["--arch", "llava-1.5-7b"], "--arch: not with --engine vllm"),
        (["--llm", "100x2"], "--llm: WIDTHxLAYERS with WIDTH a multiple of 64"),
    ],
)
def test_bench_on_vllm_refuses_what_it_cannot_serve_before_any_engine_starts(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--engine", "vllm", *argv])
    assert exit_.value.code != 0
    captured = capsys.readouterr()
    assert message in captured.err + str(exit_.value.code)
