"""The public API is explicit (every module has ``__all__``) and frozen: changing it is deliberate.

The frozen surface is ``tests/data/public_api.json`` (module -> sorted ``__all__``). After a
deliberate change, regenerate it with ``python tests/test_public_api.py --update`` and say why in
the commit.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import sys
from pathlib import Path

import click

import sideband
from sideband.cli import main

FROZEN = Path(__file__).parent / "data" / "public_api.json"

#: The CLI's commands in workflow order.
COMMANDS = ["generate", "features", "train", "run", "scan", "evaluate", "export-onnx", "publish"]


def public_modules() -> list[str]:
    """Every importable sideband module whose dotted name has no private part."""
    names = ["sideband"]
    for info in pkgutil.walk_packages(sideband.__path__, "sideband."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def surface() -> dict[str, list[str]]:
    out = {}
    for name in public_modules():
        module = importlib.import_module(name)
        out[name] = sorted(getattr(module, "__all__", ["<no __all__>"]))
    return out


def test_every_public_module_declares_all() -> None:
    missing = [name for name, names in surface().items() if names == ["<no __all__>"]]
    assert not missing, f"modules without __all__: {missing}"


def test_public_surface_is_frozen() -> None:
    frozen = json.loads(FROZEN.read_text())
    now = surface()
    changes = []
    for module in sorted(set(frozen) | set(now)):
        added = sorted(set(now.get(module, [])) - set(frozen.get(module, [])))
        removed = sorted(set(frozen.get(module, [])) - set(now.get(module, [])))
        if module not in frozen:
            changes.append(f"new module {module}")
        elif module not in now:
            changes.append(f"module {module} removed")
        if added or removed:
            changes.append(f"{module}: added {added}, removed {removed}")
    assert not changes, (
        "the public API changed:\n  " + "\n  ".join(changes) + "\nIf deliberate, run "
        "`python tests/test_public_api.py --update` and say why in the commit."
    )


def test_every_public_name_exists_and_is_documented() -> None:
    undocumented, absent = [], []
    for module_name, names in surface().items():
        module = importlib.import_module(module_name)
        for name in names:
            if not hasattr(module, name):
                absent.append(f"{module_name}.{name}")
                continue
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and not inspect.getdoc(obj):
                undocumented.append(f"{module_name}.{name}")
    assert not absent, f"names in __all__ that do not exist: {absent}"
    assert not undocumented, f"public classes/functions without a docstring: {undocumented}"


def test_cli_commands_in_workflow_order_with_help() -> None:
    ctx = click.Context(main)
    assert main.list_commands(ctx) == COMMANDS
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        assert command is not None
        summary = command.get_short_help_str(limit=200)
        assert len(summary) > 20, f"`sideband {name} --help` says too little: {summary!r}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        FROZEN.write_text(json.dumps(surface(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {FROZEN}")
    else:
        print(__doc__)
