"""The scripts in examples/ run (each in a few seconds) and print what they promise."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))
LONG = {"train_digits.py"}  # trains a network: tests/test_torch.py runs its --quick mode


def test_examples_are_listed_in_their_readme():
    readme = (EXAMPLES[0].parent / "README.md").read_text()
    assert EXAMPLES and all(f"`{p.name}`" in readme for p in EXAMPLES)


@pytest.mark.parametrize("path", [p for p in EXAMPLES if p.name not in LONG], ids=lambda p: p.name)
def test_example_runs(path, capsys):
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip()


def test_documentation_links_resolve():
    """Every relative link in the README and docs/ points to a file in the repository (the
    README used to point to files outside it)."""
    import re

    root = Path(__file__).parent.parent
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    assert len(pages) >= 7
    for page in pages:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), (page.name, target)
    assert "shared folder" not in (root / "README.md").read_text()
