"""The import graph, read from the source (AST, every import, also those inside functions).

Layers, bottom up (docs/layout.md):
- core: the top-level modules of `components` (config, tracking, atomic, audio, vocab, ...);
- blocks: `components/{model,lineage,stack,embedded}`: import only the core (and themselves);
- the stage wrapper `components/stage.py` (tracked run + lineage, one writer): imports core and blocks;
- stages: `components/{ingest,seeds,label,train,evaluate}`: import core, blocks and the wrapper, never
  another stage;
- `components/cli.py` registers every component command; `flows/` composes `desta` on top.
"""

from __future__ import annotations

import ast
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = {"model", "lineage", "stack", "embedded"}
STAGES = {"ingest", "seeds", "label", "train", "evaluate"}
COMPOSER = "components.cli"  # registers the commands: the one component that may see every stage
WRAPPER = "components.stage"  # the stage wrapper, above the blocks (it logs lineage) and below the stages
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for top in ("components", "flows") for p in sorted((ROOT / top).rglob("*.py"))}


def imports(path: Path, known: set[str]) -> list[tuple[str, str]]:
    """(imported module, imported name or '') for every import in the file; relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((sub, "") if sub in known else (base, a.name))
    return [(m, n) for m, n in found if m.split(".")[0] in {"components", "flows"}]


def graph() -> dict[str, list[tuple[str, str]]]:
    mods = modules()
    return {name: imports(path, set(mods)) for name, path in mods.items()}


def layer(module: str) -> tuple[str, str]:
    """('core'|'block'|'wrapper'|'stage'|'cli'|'flows', package)."""
    parts = module.split(".")
    if parts[0] == "flows":
        return "flows", "flows"
    if module == COMPOSER:
        return "cli", ""
    if module == WRAPPER:
        return "wrapper", ""
    if len(parts) == 1 or (len(parts) == 2 and parts[1] not in BLOCKS | STAGES):
        return "core", ""
    return ("block" if parts[1] in BLOCKS else "stage"), parts[1]


def violations() -> list[str]:
    found = []
    for src, deps in graph().items():
        kind, pkg = layer(src)
        for dep, name in deps:
            dkind, dpkg = layer(dep)
            edge = f"{src} imports {dep}" + (f".{name}" if name else "")
            if kind != "flows" and dkind == "flows":
                found.append(f"component imports flows: {edge}")
            elif kind == "core" and dkind not in {"core"}:
                found.append(f"core imports a {dkind}: {edge}")
            elif kind in {"block", "wrapper"} and dkind in {"stage", "cli", "wrapper"}:
                found.append(f"building block imports a {dkind}: {edge}")
            elif kind == "block" and dkind == "block" and dpkg != pkg:
                found.append(f"building block imports another block: {edge}")
            elif kind == "stage" and dkind == "stage" and dpkg != pkg:
                found.append(f"stage imports another stage: {edge}")
            elif kind in {"block", "stage"} and dkind == "cli":
                found.append(f"{kind} imports the CLI: {edge}")
            if name.startswith("_") and dep.split(".")[:2] != src.split(".")[:2]:
                found.append(f"private name across packages: {edge}")
    return found


def cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    edges = defaultdict(set)
    mods = set(modules())
    for src, deps in graph().items():
        edges[src] |= {d for d, _ in deps if d in mods and d != src}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(mods):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert cycles() == []


def test_layers_point_down():
    assert violations() == []


def test_components_cli_only_registers_commands():
    """components/cli.py defines no command bodies: every function it holds is a registration helper."""
    tree = ast.parse((ROOT / "components" / "cli.py").read_text())
    bodies = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    assert bodies == [], f"command bodies in components/cli.py: {bodies}"


@pytest.mark.parametrize("top", ["components", "flows", "tests", "bench", "infra"])
def test_modules_are_short(top):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / top).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


OUTSIDE = ("DESIGN" ".md", "../" "shared")  # split so this guard does not cite them itself


def test_nothing_cites_a_file_outside_the_repository():
    """The design notes live outside the repository: a fact a reader needs is written here, not cited."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    cited = [f for f in tracked if f != "tests/test_layering.py" and (ROOT / f).is_file()
             and any(name in (ROOT / f).read_text(errors="ignore") for name in OUTSIDE)]
    assert cited == []


# Modules that run or record a stage but do not decide what it writes: a change to them re-runs nothing.
PLUMBING = ("components.atomic", "components.config", "components.console", "components.progress",
            "components.probe", "components.stage", "components.tracking", "components.lineage")


def test_dvc_stages_depend_on_the_code_they_run():
    """Every module a stage's code imports (transitively) that decides its outputs is a dep of its DVC stage,
    so `dvc repro` re-runs the stage when that code changes."""
    import yaml

    mods, edges = modules(), graph()
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    missing = {}
    for name, stage in stages.items():
        seen, todo = set(), [m for m in mods if m.split(".")[:2] == ["components", name]]
        while todo:
            if (m := todo.pop()) not in seen:
                seen.add(m)
                todo += [d for d, _ in edges.get(m, []) if d in mods]
        deps = [d for d in stage["deps"] if isinstance(d, str) and d.startswith("components")]
        files = {str(mods[m].relative_to(ROOT)) for m in seen if not m.startswith(PLUMBING)}
        uncovered = sorted(f for f in files if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps))
        if uncovered:
            missing[name] = uncovered
    assert missing == {}
