"""Module sizes and function lengths of the package (issue 8's shape targets: modules under ~400 lines,
median near 150, functions under ~60 lines).

    python3 benchmarks/code_shape.py [--quick]
"""

import ast
import io
import json
import statistics
import sys
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def code_line_widths(text: str) -> list[int]:
    """Widths of the code lines (indentation included): not blank, not comments, not docstrings."""
    skip: set[int] = set()
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            skip.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    comments = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                if tok.type == tokenize.COMMENT and tok.line.strip().startswith("#")}
    return [len(line.rstrip()) for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and n not in skip and n not in comments]


def imports() -> dict[str, object]:
    from tests.test_import_direction import _cycles, import_graph, layer_of

    graph = import_graph()
    upward = [f"{m} -> {t}" for m, ts in graph.items() for t in ts if (layer_of(t) or 0) > (layer_of(m) or 0)]
    return {"import_cycles": _cycles(graph), "imports_against_the_direction": upward,
            "import_edges": sum(len(ts) for ts in graph.values())}


def shape() -> dict[str, object]:
    sizes: dict[str, int] = {}
    widths: list[int] = []
    functions: list[tuple[int, str]] = []
    for path in sorted((REPO / "tools").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        text = path.read_text()
        sizes[rel] = len(text.splitlines())
        widths += code_line_widths(text)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno:
                functions.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.name}"))
    functions.sort(reverse=True)
    nonempty = [n for n in sizes.values() if n > 5]
    return {"modules": len(sizes), "largest_module": max(sizes.items(), key=lambda kv: kv[1]),
            "median_module_lines": statistics.median(nonempty),
            "modules_over_400": [k for k, v in sizes.items() if v > 400],
            "longest_functions": functions[:3], "functions_over_60": [f for n, f in functions if n > 60],
            "mean_code_line_chars": round(statistics.mean(widths), 1), "code_lines": len(widths), **imports()}


if __name__ == "__main__":
    result = shape()
    print(json.dumps(result, indent=2))
    sys.exit(0)
