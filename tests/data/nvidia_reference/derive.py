"""Derive the key lists in this folder from a checkout of NVIDIA's BEVFusion skill files.

    python3 tests/data/nvidia_reference/derive.py <skill-dir>

<skill-dir> holds NVIDIA's references/spec_template_<action>.yaml and schemas/<action>.schema.json
(see README.md for the repository and commit). Writes keys_<action>.json next to this file: only the
dotted key names, computed with the same two walks the compatibility test applies to our own files.
"""

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from tao_bevfusion.specbuild.surface import ACTIONS  # noqa: E402

from tests.test_surface_and_artifacts import _leaf_paths, _schema_paths  # noqa: E402


def derive(skill_dir: Path, action: str) -> dict[str, object]:
    template = yaml.safe_load((skill_dir / "references" / f"spec_template_{action}.yaml").read_text())
    schema = json.loads((skill_dir / "schemas" / f"{action}.schema.json").read_text())
    return {"action": action, "template_leaves": sorted(_leaf_paths(template)),
            "schema_paths": sorted(_schema_paths(schema))}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    for action in ACTIONS:
        out = HERE / f"keys_{action}.json"
        out.write_text(json.dumps(derive(Path(argv[0]), action), indent=1) + "\n")
        print(out.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
