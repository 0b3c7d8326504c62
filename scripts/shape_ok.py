"""Exit 0 when the module on stdin has at most 400 lines and no function over 60 lines (scripts/format.sh)."""

import ast
import sys

text = sys.stdin.read()
too_long = [node for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and (node.end_lineno or node.lineno) - node.lineno + 1 > 60]
sys.exit(0 if len(text.splitlines()) <= 400 and not too_long else 1)
