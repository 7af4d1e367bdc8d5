"""The scripts in examples/ run (each in a few seconds) and print what they promise."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


def test_examples_are_listed_in_their_readme():
    readme = (EXAMPLES[0].parent / "README.md").read_text()
    assert EXAMPLES and all(f"`{p.name}`" in readme for p in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, capsys):
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip()
