"""Docs follow the code: the block tables in docs/spec.md and docs/blocks.md are the registry's."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_block_tables_match_the_registry() -> None:
    """`python -m sdpnet docs --check` finds nothing to update (run `python -m sdpnet docs` to fix)."""
    proc = subprocess.run([sys.executable, "-m", "sdpnet", "docs", "--check"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_block_is_in_the_tables() -> None:
    """Each declared block has a row in the vocabulary table and (if it has a module) in the module table."""
    from sdpnet.tools.docs import module_table, vocabulary_table
    from sdpnet.registry import get_schema, list_blocks

    vocabulary, modules = vocabulary_table(), module_table()
    for name in list_blocks():
        assert f"| `{name}` |" in vocabulary
        if get_schema(name).declares is None:
            assert f"| `{name}` |" in modules
