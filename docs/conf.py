"""Sphinx configuration of sideband's documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (or ``nox -s docs``).

The API reference is generated on every build: `write_api_pages` writes one page per public
module (found as ``tests/test_public_api.py`` finds them: every importable module whose dotted
name has no private part) into ``docs/api/generated/``. Each page documents, with autodoc, the
names of the module's ``__all__`` that the module defines, and links the names it re-exports to
the module that defines them, so every object is described once.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pydantic

import sideband

if TYPE_CHECKING:
    from sphinx.application import Sphinx

DOCS = Path(__file__).resolve().parent
API_OUT = DOCS / "api" / "generated"

project = "sideband"
author = "sideband developers"
copyright = "sideband developers"
release = sideband.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "tutorials/*.py", "**/__pycache__"]

html_theme = "furo"
html_title = f"sideband {release}"

# Markdown: $...$ maths, ::: fences, definition lists; GitHub-style heading anchors so that
# links like benchmarks/README.md#section resolve.
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# Docstrings are numpy style and write `name` for a cross-reference (the default role).
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# sideband's Returns/Yields sections are prose (one value described over several lines), which
# napoleon would split into one return value per line: render them as written.
napoleon_custom_sections = ["Returns", "Yields"]
default_role = "py:obj"
autodoc_member_order = "bysource"
autodoc_typehints_format = "short"
autodoc_default_options = {"show-inheritance": True}
# pydantic models: keep the fields, drop pydantic's own machinery.
_PYDANTIC_HIDE = ("model_config", "model_fields", "model_computed_fields")

# sideband imports its heavy and optional dependencies (torch, pyhf, onnx, pythia8mc, ...) where
# they are used, so autodoc imports every module with the base install and needs no mocks.


# ------------------------------------------------------------------------------------------
# API pages
# ------------------------------------------------------------------------------------------

#: Section of the API index each top-level module belongs to (workflow order).
STAGES = {
    "sideband": "Package",
    "sideband.events": "1 Events: reading and writing files",
    "sideband.features": "2 Features: jets and substructure",
    "sideband.regions": "2 Features: jets and substructure",
    "sideband.records": "2 Features: jets and substructure",
    "sideband.background": "3 Background templates",
    "sideband.scoring": "4 Anomaly score",
    "sideband.bumphunt": "5 Bump hunt",
    "sideband.pipeline": "Analyses: configuration, recipe, outputs",
    "sideband.pipeline_point_cloud": "Analyses: configuration, recipe, outputs",
    "sideband.config": "Analyses: configuration, recipe, outputs",
    "sideband.scan": "Analyses: configuration, recipe, outputs",
    "sideband.report": "Analyses: configuration, recipe, outputs",
    "sideband.event_results": "Analyses: configuration, recipe, outputs",
    "sideband.publish": "Analyses: configuration, recipe, outputs",
    "sideband.cli": "Analyses: configuration, recipe, outputs",
    "sideband.errors": "Package",
    "sideband.evaluation": "Evaluation and studies",
    "sideband.evaluate": "Evaluation and studies",
    "sideband.studies": "Evaluation and studies",
    "sideband.generate": "Event generation",
}


def public_modules() -> list[str]:
    """Every importable sideband module whose dotted name has no private part (as the API test)."""
    names = ["sideband"]
    for info in pkgutil.walk_packages(sideband.__path__, "sideband."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def api_homes() -> dict[str, dict[str, str]]:
    """module -> {name: module that documents it} for every public name (``__all__``).

    A name is documented where it is defined, when that module is public and exports it;
    otherwise (constants carry no ``__module__``) in the deepest public module exporting the
    same object. Dunder names (``__version__``) are left out.
    """
    modules = {n: importlib.import_module(n) for n in public_modules()}
    return {
        name: {
            item: _home(item, getattr(module, item), name, modules)
            for item in getattr(module, "__all__", ())
            if not item.startswith("__")
        }
        for name, module in modules.items()
    }


def _home(item: str, obj: object, name: str, modules: dict[str, ModuleType]) -> str:
    defined_in = getattr(obj, "__module__", None) if callable(obj) else None
    if defined_in in modules and item in getattr(modules[defined_in], "__all__", ()):
        return defined_in
    candidates = [
        m
        for m, mod in modules.items()
        if item in getattr(mod, "__all__", ()) and getattr(mod, item, None) is obj
    ]
    return max(candidates, key=lambda m: (m.count("."), m)) if candidates else name


def _stage(module: str) -> str:
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        key = ".".join(parts[:k])
        if key in STAGES:
            return STAGES[key]
    return "Other modules"


def _module_page(name: str, homes: dict[str, str]) -> str:
    module = importlib.import_module(name)
    here = [item for item, home in homes.items() if home == name]
    elsewhere = [(item, home) for item, home in homes.items() if home != name]
    # classes and functions through automodule; constants one by one, since autodoc skips a
    # member without a docstring or ``#:`` comment even when it is named in :members:
    code = [
        i
        for i in here
        if inspect.isclass(getattr(module, i)) or inspect.isroutine(getattr(module, i))
    ]
    data = [i for i in here if i not in code]
    lines = [f"# `{name}`", "", "```{eval-rst}", f".. automodule:: {name}"]
    lines.append("   :members: " + ", ".join(code) if code else "   :no-members:")
    for item in data:
        lines += ["", f".. autodata:: {name}.{item}"]
        if not _short_value(getattr(module, item)):
            lines.append("   :no-value:")
    lines += ["```", ""]
    if elsewhere:
        lines += ["Also exported here (documented where they are defined):", ""]
        lines += [f"- {{py:obj}}`{name}.{item} <{home}.{item}>`" for item, home in elsewhere]
        lines.append("")
    return "\n".join(lines)


def _short_value(value: object) -> bool:
    """Whether a constant's value is worth printing in the reference (short and plain)."""
    return isinstance(value, int | float | str | tuple) and len(repr(value)) <= 120


#: Re-exported name -> where it is documented (``sideband.events.read_features`` ->
#: ``sideband.events.formats.read_features``), so that references to either resolve.
ALIASES: dict[str, str] = {}


def write_api_pages(out: Path = API_OUT) -> list[str]:
    """Write ``<out>/<module>.md`` for every public module and ``<out>/index.md``; return the
    module names.

    Files are rewritten only when their text changes and stale ones are removed, so rebuilds
    stay incremental and a concurrent build reads complete files.
    """
    homes = api_homes()
    pages: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    for name, names in homes.items():
        pages[f"{name}.md"] = _module_page(name, names)
        sections.setdefault(_stage(name), []).append(name)
        ALIASES.update({f"{name}.{i}": f"{h}.{i}" for i, h in names.items() if h != name})
    order = [*dict.fromkeys(STAGES.values()), "Other modules"]
    index = ["# Modules", "", "Generated from each public module's `__all__` on every build.", ""]
    for section in sorted(sections, key=order.index):
        index += [f"## {section}", "", "```{toctree}", ":maxdepth: 1", "", *sections[section]]
        index += ["```", ""]
    pages["index.md"] = "\n".join(index)
    out.mkdir(parents=True, exist_ok=True)
    for stale in {p.name for p in out.glob("*.md")} - set(pages):
        (out / stale).unlink(missing_ok=True)
    for filename, text in pages.items():
        path = out / filename
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            tmp.replace(path)
    return list(homes)


# ------------------------------------------------------------------------------------------
# Docstrings are plain text first: two notations in them are not reStructuredText
# ------------------------------------------------------------------------------------------

#: ``|eta|``, ``|Δφ|``: absolute values, which reST reads as substitution references.
_ABS = re.compile(r"(?<![\\`|])\|([^|\s`][^|`]*?)\|(?![_`|])")
#: ```WorkItem`s``: a plural of a cross-reference, which reST reads as an unterminated role.
_PLURAL = re.compile(r"(?<!`)(`[^`\s][^`]*`)(?=[A-Za-z])")


def plain_text_notation(line: str) -> str:
    """Escape absolute-value bars and split a role from a plural "s" (outside ````literals````)."""
    parts = line.split("``")
    for k in range(0, len(parts), 2):  # even parts lie outside inline literals
        parts[k] = _PLURAL.sub(r"\1\\ ", _ABS.sub(r"\\|\1\\|", parts[k]))
    return "``".join(parts)


def _process_docstring(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    if what == "data" and _inherited_doc(obj, lines):
        # a constant without a ``#:`` comment: autodoc would show its type's docstring (dict,
        # typing.Literal, click.Group, ...); a click command shows its help instead
        lines[:] = inspect.cleandoc(getattr(obj, "help", None) or "").splitlines()
    lines[:] = [plain_text_notation(line) for line in lines]


def _inherited_doc(obj: object, lines: list[str]) -> bool:
    own = "\n".join(lines).strip()
    return bool(own) and own == inspect.cleandoc(type(obj).__doc__ or "").strip()


def _skip_member(
    app: Sphinx, what: str, name: str, obj: object, skip: bool, options: Any
) -> bool | None:
    if name in _PYDANTIC_HIDE:
        return True
    # scikit-learn's generated metadata-routing setters (set_fit_request, ...)
    if name.startswith("set_") and name.endswith("_request"):
        return True
    # NamedTuple fields: their docs are the class's Attributes section
    if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    return None


def _signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    # pydantic models: the fields are documented one by one; the generated __init__ signature
    # repeats them with every default, nested blocks included.
    if what == "class" and inspect.isclass(obj) and issubclass(obj, pydantic.BaseModel):
        return "", None
    return None


def _resolve_alias(app: Sphinx, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a reference to a re-exported name (or one of its members) to the documented
    object: ``sideband.background.SigmaTemplate.at_region`` ->
    ``sideband.background.sigma.SigmaTemplate.at_region``."""
    if node.get("refdomain") != "py":
        return None
    parts = node.get("reftarget", "").split(".")
    prefixes = (".".join(parts[:k]) for k in range(len(parts), 0, -1))
    prefix = next((p for p in prefixes if p in ALIASES), None)
    if prefix is None:
        return None
    target = ALIASES[prefix] + node["reftarget"][len(prefix) :]
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], target, node, contnode
    )


def setup(app: Sphinx) -> None:
    write_api_pages()
    # before napoleon (priority 500), so that its sections see the escaped text
    app.connect("autodoc-process-docstring", _process_docstring, priority=400)
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-signature", _signature)
    app.connect("missing-reference", _resolve_alias)
