"""The README and the pages of ``docs/`` point at things that exist: every relative link at a file
(and its ``#anchor`` at a heading of that file, as GitHub names headings), and every path of the
repository they name (``src/...``, ``twogpu/...``, ``configs/...``, ...), in prose or in a command,
at a file or folder of this checkout. Moving a module without its documentation fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: a path into this repository's folders, up to a character that cannot be part of one (`<`, `*`, ...);
#: not ``src/caffe/...``, BVLC Caffe's files quoted as sources
_PATH = re.compile(r"(?<![\w/.-])(?:src/alexnet|twogpu|configs|tests|benchmarks|docs|\.ci)/[\w./-]*")


def _prose(page: Path) -> str:
    """The page without its fenced code blocks (a ``#`` there is a shell comment, not a heading)."""
    return re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)


def _anchors(page: Path) -> set[str]:
    """GitHub's anchor of each heading: lower case, punctuation dropped, spaces as hyphens."""
    return {
        re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        for title in re.findall(r"^#+ (.+)$", _prose(page), flags=re.M)
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_reach_a_file_and_a_heading(page):
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", _prose(page)):
        if target.startswith(("http://", "https://")):
            continue
        linked = (page.parent / target).resolve() if target else page
        assert linked.exists(), f"{page.name}: link to {target}, which does not exist"
        if anchor:
            assert anchor in _anchors(linked), f"{page.name}: no heading #{anchor} in {linked.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_named_paths_exist(page):
    named = {p.rstrip(".") for p in re.findall(_PATH, page.read_text())}  # prose and code blocks alike
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == [], f"{page.name} names paths that do not exist: {missing}"
