"""The package's import graph: every arrow points down, no circle, a light `maxvit --help`.

Layers, top to bottom: cli -> repro -> train, bench -> data, models -> shared helpers
(errors, files, device, plots, recorded). Imports inside functions count too: they run as soon as the function
does, and hide a circle as well as a top-level import would.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "maxvit"
SHARED = {"errors", "files", "device", "plots", "recorded", "__init__"}
ALLOWED = {  # layer -> layers it may import
    "cli": {"cli", "repro", "train", "bench", "data", "models", "shared"},
    "repro": {"repro", "train", "bench", "data", "models", "shared"},
    "train": {"train", "data", "models", "shared"},
    "bench": {"bench", "data", "models", "shared"},
    "data": {"data", "shared"},
    "models": {"models", "shared"},
    "shared": {"shared"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in SHARED:
        return "shared"
    return "cli" if parts[1] == "__main__" else parts[1]


def imports() -> dict[str, set[str]]:
    """module -> the maxvit modules it imports (anywhere in the file)."""
    graph = {}
    for path in SRC.rglob("*.py"):
        name = module_name(path)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith("maxvit"):
                    found.add(node.module)
                    for alias in node.names:  # `from maxvit.data import sources`
                        if (
                            SRC.parent / node.module.replace(".", "/") / f"{alias.name}.py"
                        ).exists():
                            found.add(f"{node.module}.{alias.name}")
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("maxvit")}
        graph[name] = found - {name}
    return graph


def test_every_import_points_down():
    wrong = [
        f"{m} -> {t}"
        for m, targets in imports().items()
        for t in targets
        if layer(t) not in ALLOWED[layer(m)]
    ]
    assert wrong == []


def test_no_import_circle():
    graph = imports()
    modules = {m for m in graph}
    # a package's __init__ only re-exports lazily (by name), so it does not close a circle
    edges = {m: {t for t in graph[m] if t in modules and not _is_package(t)} for m in graph}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def _is_package(module: str) -> bool:
    return (SRC.parent / module.replace(".", "/") / "__init__.py").exists()


def test_help_imports_no_torch():
    code = (
        "import sys\nfrom maxvit.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'timm', 'numpy', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
