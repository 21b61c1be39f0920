"""The `omni-emotion` command line: quick to answer, every flag explained, subcommands mounted lazily."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import types

import pytest

from omni_emotion import cli
from omni_emotion.cli import COMMANDS, Command, build_parser, main


def test_the_parser_imports_neither_torch_nor_transformers():
    code = (
        "import sys; from omni_emotion.cli import build_parser; build_parser(); "
        "print(sorted({'torch', 'transformers', 'modeling_omni_emotion'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_fusion_choices_are_the_models():
    from modeling_omni_emotion.configuration_omni_emotion import FUSION_MODES

    assert cli.FUSION_CHOICES == FUSION_MODES


def test_every_flag_has_a_help_text():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, subparser in [("omni-emotion", parser), *subparsers.choices.items()]:
        for action in subparser._actions:
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help"


def test_config_overrides_must_be_a_json_object(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["assemble", "--output", "out", "--config-overrides", "[1]"])
    assert exit_info.value.code == 2
    assert "--config-overrides: expected a JSON object" in capsys.readouterr().err


def test_train_hands_every_word_to_the_recipe_parser_help_included(monkeypatch):
    received = []
    train = dataclasses.replace(COMMANDS["train"], run=lambda args: received.append(args.recipe_arguments))
    monkeypatch.setitem(COMMANDS, "train", train)
    main(["train", "--help"])
    main(["train", "recipes/phase3_instruct.yaml", "--learning_rate", "2e-5"])
    assert received == [["--help"], ["recipes/phase3_instruct.yaml", "--learning_rate", "2e-5"]]


def test_a_command_from_a_module_is_imported_only_when_it_runs(monkeypatch):
    module = types.ModuleType("fake_command")
    module.add_arguments = lambda parser: parser.add_argument("--clips", type=int, help="how many clips")
    module.main_from_args = lambda args: calls.append(args.clips)
    calls: list[int] = []
    imported: list[str] = []
    monkeypatch.setitem(sys.modules, "fake_command", module)
    real_import = cli.importlib.import_module
    monkeypatch.setattr(
        cli.importlib, "import_module", lambda name: imported.append(name) or real_import(name)
    )
    monkeypatch.setitem(COMMANDS, "fake", Command.from_module("a mounted command", "fake_command"))

    with pytest.raises(SystemExit):
        main(["smoke", "--help"])
    assert imported == []
    main(["fake", "--clips", "3"])
    assert calls == [3]
