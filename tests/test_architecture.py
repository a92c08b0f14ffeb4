"""The shape of the house: every module sits in a layer of the import contract, and the import graph has
no cycle (import-linter checks the direction between layers; this checks that none is left out)."""

from __future__ import annotations

import tomllib

import grimp

from tests.support import REPO


def layered_modules() -> list[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    [layers] = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return [part.strip() for layer in layers for part in layer.replace("|", ":").split(":")]


def test_every_module_is_in_a_layer() -> None:
    graph = grimp.build_graph("app", cache_dir=None)
    layered = layered_modules()
    loose = sorted(
        module
        for module in graph.modules
        if module not in ("app", "app.tls")  # the root (its version) and the TLS package's docstring
        and not any(module == layer or module.startswith(layer + ".") for layer in layered)
    )
    assert not loose, f"modules outside every layer of pyproject.toml's import contract: {loose}"


def test_the_import_graph_has_no_cycle() -> None:
    graph = grimp.build_graph("app", cache_dir=None)
    cycles = [
        (module, imported)
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.startswith("app") and module in graph.find_upstream_modules(imported)
    ]
    assert not cycles, cycles
