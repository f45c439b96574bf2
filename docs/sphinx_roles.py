"""A griffe extension: the Sphinx roles in tradeloop's docstrings become mkdocstrings cross-references.

The docstrings are plain prose with reST inline roles (``:class:`~tradeloop.sim.Simulator```,
``:meth:`Faults.set```) because that is what a reader of the source and ``help()`` expects. Rather
than rewrite them for one documentation tool, this turns each role into an autorefs link
(``[`Simulator`][tradeloop.sim.server.Simulator]``), its name resolved in the docstring owner's
scope as Python would. A role naming nothing that exists stays a link to that name, so
``mkdocs build --strict`` fails on it; a role naming an object outside the documented API (the
standard library, an internal class) becomes plain code.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|data|attr|exc|obj):`(~?)([\w.]+)(?:\(\))?`")
DOCUMENTED_MODULES = (
    "tradeloop",
    "tradeloop.exchanges",
    "tradeloop.streams",
    "tradeloop.trading",
    "tradeloop.sim",
    "tradeloop.testing",
    "tradeloop.testing.plugin",
    "tradeloop.models",
    "tradeloop.symbols",
    "tradeloop.errors",
)
"""The modules the API reference renders (docs/reference/): their public members are linkable."""


class SphinxRoles(griffe.Extension):
    def __init__(self) -> None:
        self._documented: set[str] | None = None

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        self._rewrite(pkg, loader)  # the top package gets no on_object event

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        self._rewrite(obj, loader)

    def _rewrite(self, obj: griffe.Object, loader: griffe.GriffeLoader) -> None:
        if obj.docstring is None or ":`" not in obj.docstring.value:
            return

        def link(match: re.Match[str]) -> str:
            short, name = match.group(1), match.group(2)
            shown = f"`{name.rsplit('.', 1)[-1] if short else name}`"
            target = _canonical(obj, loader, name)
            if target is None:
                return f"[{shown}][{name}]"  # nothing of that name: autorefs reports it, strict fails
            return f"[{shown}][{target}]" if target in self._surface(loader) else shown

        obj.docstring.value = ROLE.sub(link, obj.docstring.value)

    def _surface(self, loader: griffe.GriffeLoader) -> set[str]:
        """Canonical paths of everything the reference pages render."""
        if self._documented is None:
            self._documented = set()
            for module_path in DOCUMENTED_MODULES:
                module = loader.modules_collection[module_path]
                self._documented.add(module.path)
                for member in module.members.values():
                    if member.is_public and not member.is_module:  # submodules are not rendered
                        _add_tree(_final(member), self._documented)
        return self._documented


def _final(obj: griffe.Object | griffe.Alias) -> griffe.Object | griffe.Alias:
    try:
        return obj.final_target if isinstance(obj, griffe.Alias) else obj
    except griffe.AliasResolutionError:
        return obj


def _add_tree(obj: griffe.Object | griffe.Alias, paths: set[str]) -> None:
    paths.add(obj.path)
    if isinstance(obj, griffe.Class):
        for name, member in obj.members.items():
            if not name.startswith("_"):
                _add_tree(_final(member), paths)


def _canonical(scope: griffe.Object, loader: griffe.GriffeLoader, name: str) -> str | None:
    """The canonical path of ``name`` as seen from ``scope``; a path outside tradeloop (not in the
    documented surface) for a name of another package; None if nothing has that name."""
    head, _, rest = name.partition(".")
    try:
        resolved = scope.resolve(head)
    except griffe.NameResolutionError:
        if rest and head != "tradeloop" and importlib.util.find_spec(head) is not None:
            return name  # another package's object, such as decimal.Decimal
        if head != "tradeloop":
            return None
        resolved = head
    path = f"{resolved}.{rest}" if rest else resolved
    if not path.startswith("tradeloop"):
        return path
    try:
        return _final(loader.modules_collection[path]).path
    except (KeyError, griffe.AliasResolutionError):
        return None


def _parents(obj: griffe.Object) -> list[griffe.Object]:
    parents = []
    parent = obj.parent
    while parent is not None:
        parents.append(parent)
        parent = parent.parent
    return parents
