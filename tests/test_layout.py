"""The import rules of docs/DESIGN.md's layout table, checked on every module of every folder.

The table is the one source: this test reads it from DESIGN.md (between its marker comment and the
end of the table), so the document and the check cannot drift apart.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- import rules: tests/test_layout.py reads this table -->"
# installed package name of each folder (pyproject's package-dir)
PACKAGES = {"api": "edgeamp", "core": "edgeamp.core", "edge_runtime": "edgeamp.edge_runtime",
            "export": "edgeamp.export", "interop": "edgeamp.interop", "train": "edgeamp.train"}
BY_PACKAGE = {v: k for k, v in PACKAGES.items()}


def read_rules(design: str) -> dict[str, dict]:
    """folder -> {"edgeamp": set of folders, "other": {name: file or None}} from the table."""
    lines = design.split(MARKER, 1)[1].strip().splitlines()
    rules = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        folder = cells[0].strip("`/")
        ours = {c.strip() for c in cells[3].split(",") if c.strip() not in ("", "–", "-")}
        other = {}
        for item in cells[4].split(","):
            item = item.strip()
            if item in ("", "–", "-"):
                continue
            m = re.fullmatch(r"([\w.]+)(?: \(([\w.]+) only\))?", item)
            assert m, f"DESIGN.md layout table: cannot read {item!r}"
            other[m[1]] = m[2]
        rules[folder] = {"edgeamp": ours, "other": other}
    return rules


def _imports(path: Path, package: str):
    """(line, absolute module name) of every import in a module, function-level ones included."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                yield node.lineno, ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.lineno, node.module or ""


def violations(root: Path, rules: dict[str, dict]) -> list[str]:
    found = []
    for folder, rule in rules.items():
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root / folder)
            package = ".".join([PACKAGES[folder], *rel.parent.parts])
            for line, name in _imports(path, package):
                top = name.split(".")[0]
                where = f"{folder}/{rel}:{line}"
                if top == "edgeamp":
                    parts = name.split(".")
                    target = BY_PACKAGE.get(".".join(parts[:2]), "api") if len(parts) > 1 else "api"
                    if target != folder and target not in rule["edgeamp"]:
                        found.append(f"{where} imports {name} ({target}/ is not in {folder}/'s may-import list)")
                elif top not in sys.stdlib_module_names and top != "__future__":
                    if top not in rule["other"]:
                        found.append(f"{where} imports {top}, which {folder}/ may not import")
                    elif rule["other"][top] not in (None, path.name):
                        found.append(f"{where} imports {top}: only {folder}/{rule['other'][top]} may")
    return found


def test_every_import_follows_the_layout_table():
    rules = read_rules((ROOT / "docs" / "DESIGN.md").read_text())
    assert set(rules) == set(PACKAGES), "DESIGN.md's layout table names every installed folder"
    assert violations(ROOT, rules) == []


@pytest.mark.parametrize("folder, source, words", [
    ("core", "from edgeamp.edge_runtime import ov_compat\n", "edge_runtime/ is not in core/'s"),
    ("core", "def f():\n    import tensorflow\n", "imports tensorflow, which core/ may not"),
    ("edge_runtime", "from edgeamp.interop import capture\n", "interop/ is not in edge_runtime/'s"),
    ("edge_runtime", "import openvino\n", "only edge_runtime/ov_compat.py may"),
    ("export", "from ..train import fit\n", "train/ is not in export/'s"),
])
def test_a_forbidden_import_is_found(tmp_path, folder, source, words):
    rules = read_rules((ROOT / "docs" / "DESIGN.md").read_text())
    for name in PACKAGES:
        (tmp_path / name).mkdir()
    (tmp_path / folder / "added.py").write_text(source)
    found = violations(tmp_path, rules)
    assert len(found) == 1 and words in found[0], found
