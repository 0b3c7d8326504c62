"""Module sizes and function lengths of the package (issue 8's shape targets: modules under ~400 lines,
median near 150, functions under ~60 lines).

    python3 benchmarks/code_shape.py [--quick]
"""

import ast
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shape() -> dict[str, object]:
    sizes: dict[str, int] = {}
    functions: list[tuple[int, str]] = []
    for path in sorted((REPO / "tools").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        text = path.read_text()
        sizes[rel] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno:
                functions.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.name}"))
    functions.sort(reverse=True)
    nonempty = [n for n in sizes.values() if n > 5]
    return {"modules": len(sizes), "largest_module": max(sizes.items(), key=lambda kv: kv[1]),
            "median_module_lines": statistics.median(nonempty),
            "modules_over_400": [k for k, v in sizes.items() if v > 400],
            "longest_functions": functions[:3], "functions_over_60": [f for n, f in functions if n > 60]}


if __name__ == "__main__":
    result = shape()
    print(json.dumps(result, indent=2))
    sys.exit(0)
