"""The architecture is visible and enforced: imports go one way, from the bottom up."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# package prefix -> layer; the longest matching prefix wins. A new package must be placed here.
LAYERS = {
    "vbp_live": 1,  # the package root (version only)
    "vbp_live.core": 1,
    "vbp_live.synth": 1,
    "vbp_live.models": 2,
    "vbp_live.attribution": 2,
    "vbp_live.io": 3,
    "data_prep": 3,
    "vbp_live.train": 4,
    "vbp_live.stream": 4,
    "vbp_live.bench": 4,
    "vbp_live.evaluate": 4,
    "vbp_live.cli": 5,
}
NO_TORCH = ("vbp_live.core", "vbp_live.synth")


def layer_of(module: str) -> int | None:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    return LAYERS[best] if best else None


def modules() -> list[tuple[str, Path]]:
    out = []
    for top in ("vbp_live", "data_prep"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            out.append((".".join(parts), path))
    return out


def imports(path: Path, module: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the package
                base = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                found.append(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.append(node.module)
    return found


def test_every_package_has_a_layer():
    missing = sorted({m for m, _ in modules() if layer_of(m) is None})
    assert not missing, f"assign these packages a layer in tests/test_layers.py: {missing}"


def test_imports_go_one_way():
    bad = []
    for mod, path in modules():
        here = layer_of(mod)
        for imp in imports(path, mod):
            there = layer_of(imp)
            if there is not None and here is not None and there > here:
                bad.append(f"{mod} (layer {here}) imports {imp} (layer {there})")
    assert not bad, "\n".join(bad)


def test_bottom_layer_has_no_torch():
    bad = [f"{mod} imports {imp}" for mod, path in modules() if mod.startswith(NO_TORCH)
           for imp in imports(path, mod) if imp.split(".")[0] in ("torch", "rosbags", "triton")]
    assert not bad, "\n".join(bad)


def test_nothing_imports_the_cli():
    bad = [f"{mod} imports {imp}" for mod, path in modules() if not mod.startswith("vbp_live.cli")
           for imp in imports(path, mod) if imp.startswith("vbp_live.cli")]
    assert not bad, "\n".join(bad)
