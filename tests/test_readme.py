"""The README's Python code blocks run as written (they are the quickstart users copy)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, capsys):
    exec(
        compile(BLOCKS[index], f"README.md[python block {index}]", "exec"),
        {"__name__": "__readme__"},
    )
    assert capsys.readouterr().out.strip()  # every block prints what it found
