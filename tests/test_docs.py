"""Every import the README and docs/ show resolves: moving a module breaks them silently
(docs/api.md imported `extractor.peers` for a whole release after it moved)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Examples may elide values (`{"input_ids": ids, ...}`), so the import statements are
# taken out of the python blocks and parsed alone.
PYTHON_BLOCK = re.compile(r"^```(?:python|py)\n(.*?)^```", re.S | re.M)
OUR_IMPORT = re.compile(r"^from (?:extractor|diagnostics)[\w.]* import (?:\([^)]*\)|[^\n]*)", re.M)


def _shown_imports() -> list[tuple[str, str, str]]:
    """(document, module, name) for each `from ours import name` in a python block."""
    found = []
    for doc in DOCS:
        for block in PYTHON_BLOCK.findall(doc.read_text("utf-8")):
            for statement in OUR_IMPORT.findall(block):
                node = ast.parse(statement).body[0]
                assert isinstance(node, ast.ImportFrom) and node.module
                found.extend((doc.name, node.module, alias.name) for alias in node.names)
    return found


def test_every_import_the_docs_show_resolves():
    shown = _shown_imports()
    assert len(shown) >= 10, f"expected the docs' examples to import our API, found {shown}"
    broken = []
    for doc, module, name in shown:
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            broken.append(f"{doc}: from {module} import {name} ({exc})")
    assert not broken, "\n".join(broken)
