"""Check the two rooms and the plugin's import graph (tests/test_layout.py runs this).

    python scripts/import_graph.py            # print the plugin's layers and every rule's result

Rules (each import statement is read from the code, including imports inside functions):
1. the plugin (`peft_softprompt_ext`) imports nothing of the bench (`softprompt_bench`);
2. the bench imports the plugin only through names in `peft_softprompt_ext.__all__`;
3. recipes and benchmarks import the bench and the plugin, never each other;
4. the plugin's import graph has no cycle (so no module imports back up a layer), and nothing
   but the package's own `__init__` imports it;
5. only `_peft_compat.py` imports PEFT or touches its internals (the `peft_config` /
   `prompt_encoder` / `word_embeddings` / `prompt_tokens` attributes, PEFT's file names);
6. the serving room (`softprompt_serve`, run in vLLM's venv) imports neither PEFT, the plugin nor
   the bench, and neither of those imports it.
Exit status 1 and one line per violation when a rule is broken.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN, BENCH, SERVE = "peft_softprompt_ext", "softprompt_bench", "softprompt_serve"
SEAM = f"{PLUGIN}._peft_compat"
PEFT_ATTRIBUTES = {"peft_config", "prompt_encoder", "word_embeddings", "prompt_tokens", "base_model_prepare_inputs_for_generation"}
PEFT_FILE_NAMES = {"adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_of(package: str) -> dict[str, Path]:
    return {module_name(path): path for path in sorted((REPO / package).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import statement of a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # `from pkg import module` is an edge to the module itself
                target = f"{base}.{alias.name}"
                found.append((target, []) if target in known else (base, [alias.name]))
    return found


def plugin_graph() -> dict[str, set[str]]:
    modules = modules_of(PLUGIN)
    graph = {}
    for name, path in modules.items():
        graph[name] = {target for target, _ in imports_of(name, path, set(modules)) if target in modules and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                found.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def layers(graph: dict[str, set[str]]) -> dict[str, int]:
    depth: dict[str, int] = {}

    def level(node):
        if node not in depth:
            depth[node] = 0
            depth[node] = 1 + max((level(target) for target in graph[node]), default=-1)
        return depth[node]

    for node in graph:
        level(node)
    return depth


def _touches_peft(path: Path) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in PEFT_ATTRIBUTES:
            problems.append(f"reads PEFT's .{node.attr} (line {node.lineno})")
        elif isinstance(node, ast.Constant) and node.value in PEFT_FILE_NAMES:
            problems.append(f"spells PEFT's file name {node.value!r} (line {node.lineno})")
    return problems


def violations() -> list[str]:
    problems = []
    plugin, bench, serve = modules_of(PLUGIN), modules_of(BENCH), modules_of(SERVE)
    public = set(__import__(PLUGIN).__all__)
    for name, path in plugin.items():
        for target, _ in imports_of(name, path, set(plugin)):
            if target.split(".")[0] == BENCH:
                problems.append(f"rule 1: {name} imports the bench ({target})")
            if target.split(".")[0] == "peft" and name != SEAM:
                problems.append(f"rule 5: {name} imports PEFT ({target}); only {SEAM} may")
            if target == PLUGIN and name != PLUGIN:
                problems.append(f"rule 4: {name} imports the package's __init__ (the top layer)")
        if name != SEAM:
            problems += [f"rule 5: {name} {problem}" for problem in _touches_peft(path)]
    for name, path in bench.items():
        for target, names in imports_of(name, path, set(plugin) | set(bench)):
            if target.split(".")[0] == PLUGIN and (target != PLUGIN or not set(names) <= public):
                problems.append(f"rule 2: {name} imports {target} {names or ''}: not the plugin's public API")
    for name, path in serve.items():
        for target, _ in imports_of(name, path, set(serve)):
            if target.split(".")[0] in ("peft", PLUGIN, BENCH):
                problems.append(f"rule 6: {name} imports {target}; the serving venv has no PEFT (see softprompt_serve/__init__.py)")
    for name, path in {**plugin, **bench}.items():
        problems += [f"rule 6: {name} imports the serving room ({target})"
                     for target, _ in imports_of(name, path, set()) if target.split(".")[0] == SERVE]  # fmt: skip
    scripts = {p.stem for folder in ("recipes", "benchmarks") for p in (REPO / folder).glob("*.py")}
    for folder in ("recipes", "benchmarks"):
        for path in sorted((REPO / folder).glob("*.py")):
            for target, _ in imports_of(path.stem, path, set()):
                if target.split(".")[0] in scripts:
                    problems.append(f"rule 3: {folder}/{path.name} imports {target}")
    graph = plugin_graph()
    problems += [f"rule 4: import cycle {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return problems


def main() -> int:
    graph = plugin_graph()
    if not cycles(graph):
        by_layer: dict[int, list[str]] = {}
        for name, level in layers(graph).items():
            by_layer.setdefault(level, []).append(name.removeprefix(PLUGIN + ".") or PLUGIN)
        for level in sorted(by_layer):
            print(f"layer {level}: {', '.join(sorted(by_layer[level]))}")
    problems = violations()
    print("\n".join(problems) if problems else "no violations: two rooms, no cycle, PEFT only in the seam")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
