"""The architecture is visible and enforced: imports go one way, from the bottom up, with no cycles."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# package prefix -> layer; the longest matching prefix wins. A new package must be placed here.
LAYERS = {
    "vbp_live": 1,  # the package root (version only)
    "vbp_live.core": 1,
    "vbp_live.synth": 1,
    "vbp_live.models": 2,
    "vbp_live.attribution": 2,
    "vbp_live.recordings": 3,  # reads every recording format into frames + labels (uses only layer 1)
    "vbp_live.io": 3,
    "data_prep": 3,  # recordings -> datasets (uses vbp_live.recordings and vbp_live.io)
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


# Modules that exist to hold an optional third-party dependency: importing them inside a function
# (to say clearly that the dependency is missing) is the lazy import of a heavy third-party package.
LAZY_OPTIONAL = {"vbp_live.attribution.triton_kernels": "triton"}

# Function-level imports that go sideways, in code other work on issue 14 is changing. Remove an
# entry when its import is gone (the test says so); never add one for new code.
KNOWN_SIDEWAYS: set[str] = set()


class _ImportFinder(ast.NodeVisitor):
    """Every import of one module: (target, inside a function?), leaving out ``if TYPE_CHECKING:`` blocks."""

    def __init__(self, module: str, is_package: bool, known: set[str]):
        self.module, self.is_package, self.known = module, is_package, known
        self.depth = 0
        self.found: list[tuple[str, bool]] = []

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
        if name == "TYPE_CHECKING":  # imports for type hints only never run
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(a.name, self.depth > 0) for a in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # relative import: resolve against the package
            parts = self.module.split(".")
            parts = parts[: len(parts) - node.level + self.is_package]
            base = ".".join(parts + ([node.module] if node.module else []))
        for alias in node.names:  # `from pkg import module` imports the module
            sub = f"{base}.{alias.name}"
            self.found.append((sub if sub in self.known else base, self.depth > 0))


def import_graph() -> dict[str, list[tuple[str, bool]]]:
    """Module -> [(imported module of this tree, inside a function?)], type-checking imports left out."""
    mods = modules()
    known = {m for m, _ in mods}
    graph = {}
    for mod, path in mods:
        finder = _ImportFinder(mod, path.name == "__init__.py", known)
        finder.visit(ast.parse(path.read_text(encoding="utf-8")))
        graph[mod] = [(t, lazy) for t, lazy in finder.found if t in known and t != mod]
    return graph


def package_of(module: str) -> str:
    """The LAYERS entry a module belongs to (its package)."""
    return max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as e:
        return list(e.args[1])
    return None


def test_no_module_import_cycles():
    """No module imports itself back, even through imports inside functions."""
    graph = {m: {t for t, _ in imps} for m, imps in import_graph().items()}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_package_import_cycles():
    """Packages (the LAYERS entries) import each other one way only, e.g. never io -> data_prep -> io."""
    graph: dict[str, set[str]] = {p: set() for p in LAYERS}
    for mod, imps in import_graph().items():
        graph[package_of(mod)] |= {package_of(t) for t, _ in imps} - {package_of(mod)}
    cycle = _cycle(graph)
    assert cycle is None, "package import cycle: " + " -> ".join(cycle or [])


def _sideways() -> set[str]:
    bad = set()
    for mod, imps in import_graph().items():
        here = layer_of(mod)
        for target, lazy in imps:
            if lazy and target not in LAZY_OPTIONAL and layer_of(target) >= here:
                bad.add(f"{mod} -> {target}")
    return bad


def test_function_level_imports_only_go_down():
    """An import inside a function may reach a lower layer (or a heavy third-party package), never sideways or up.

    A lazy import of a module of the same layer hides a dependency (and, often, a cycle): import it
    at the top of the module, or move what both need into a module below them.
    """
    bad = sorted(_sideways() - KNOWN_SIDEWAYS)
    assert not bad, "function-level imports of the same or a higher layer:\n" + "\n".join(bad)
    gone = sorted(KNOWN_SIDEWAYS - _sideways())
    assert not gone, f"fixed, remove from KNOWN_SIDEWAYS in tests/test_layers.py: {gone}"


def test_one_class_per_name():
    """One name, one meaning: no two public classes of the tree share a name."""
    where: dict[str, list[str]] = {}
    for mod, path in modules():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where.setdefault(node.name, []).append(mod)
    dup = {name: mods for name, mods in where.items() if len(mods) > 1}
    assert not dup, f"classes defined more than once: {dup}"
