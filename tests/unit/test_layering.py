"""Imports follow the layering written in docs/architecture.md: a module imports its own package
and the layers before it, plus the exceptions listed there with a reason. Parsed with ast, so
imports inside functions count too; ``if TYPE_CHECKING:`` blocks (types only) do not."""

from __future__ import annotations

import ast
import re

from tests.conftest import REPO

DOC = (REPO / "docs" / "architecture.md").read_text()


def _section(marker: str) -> str:
    return DOC.split(f"<!-- {marker} -->", 1)[1].split(f"<!-- /{marker} -->", 1)[0]


def layers() -> dict[str, int]:
    rank = {}
    for i, line in enumerate(x for x in _section("layers").splitlines() if re.match(r"\d+\.", x.strip())):
        for name in re.findall(r"`([\w.]+)`", line):
            rank[name] = i
    return rank


def exceptions() -> set[tuple[str, str]]:
    allowed = set()
    for row in _section("layer-exceptions").splitlines()[2:]:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) >= 2:
            for importer in re.findall(r"`([\w.]+)`", cells[0]):
                for imported in re.findall(r"`([\w.]+)`", cells[1]):
                    allowed.add((importer, imported))
    return allowed


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "moderator"


def module_imports(tree: ast.AST):
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "moderator":
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "moderator":
                    yield node.lineno, alias.name


def test_every_package_has_a_layer():
    rank = layers()
    units = {unit(".".join(f.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")) for f in (REPO / "moderator").rglob("*.py")}
    assert units - set(rank) == set(), f"docs/architecture.md's layers lack {sorted(units - set(rank))}"


def test_no_import_runs_against_the_layering():
    rank, allowed = layers(), exceptions()
    wrong = []
    for path in sorted((REPO / "moderator").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for line, target in module_imports(ast.parse(path.read_text())):
            a, b = unit(module), unit(target)
            if a != b and rank[b] > rank[a] and (module, target) not in allowed:
                wrong.append(f"{path.relative_to(REPO)}:{line}: {module} ({a}) imports {target} ({b})")
    assert not wrong, "imports against docs/architecture.md's layering:\n" + "\n".join(wrong)


def test_the_checker_sees_an_upward_import():
    tree = ast.parse("def f():\n    from moderator.app import Application\n")
    assert list(module_imports(tree)) == [(2, "moderator.app")]
    typed = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from moderator.app import Application\n")
    assert list(module_imports(typed)) == []
    assert layers()["policy"] < layers()["processing"] < layers()["stream"] < layers()["app"]
