"""A fresh clone is complete: the design and style guides are in the repository and nothing points outside it."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What a clone does not have: the working folders of a checkout and the machine around it.
NOT_IN_A_CLONE = {".git", ".venv", "instance", "artifacts", "__pycache__", ".pytest_cache", "node_modules"}
TEXT = {".py", ".md", ".html", ".txt", ".toml", ".cfg", ".ini", ".json", ".css", ".sh", ".yml", ".yaml", ""}


def repository_files():
    for path in sorted(ROOT.rglob("*")):
        parts = set(path.relative_to(ROOT).parts)
        if path.is_file() and not parts & NOT_IN_A_CLONE and path.suffix in TEXT and path.stat().st_size < 2_000_000:
            yield path


def test_the_design_and_the_style_guide_are_in_the_repository_and_the_readme_links_them():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "[docs/DESIGN.md](docs/DESIGN.md)" in readme and "[docs/STYLE.md](docs/STYLE.md)" in readme
    assert (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8").startswith(
        "# Provider verification back-office — design")
    assert (ROOT / "docs" / "STYLE.md").read_text(encoding="utf-8").startswith("# How the code should feel")


def test_nothing_in_the_repository_points_outside_it():
    outside = re.compile(r"\.\./shared|/work/shared")
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in repository_files() if path.name != "test_docs.py"
             for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if outside.search(line)]
    assert found == []


def test_every_relative_link_in_the_markdown_opens_a_file_of_the_repository():
    broken = []
    for page in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            if not (page.parent / target).resolve().is_file():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []
