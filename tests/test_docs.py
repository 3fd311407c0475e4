"""The README stays short and newcomer-first, and every link in the docs leads somewhere real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC_FILES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
MAX_README_LINES = 250

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code (links inside code are not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _links(path: Path) -> list[str]:
    """Every link and image target in a markdown file, outside code."""
    return LINK.findall(_prose(path.read_text(encoding="utf-8")))


def _is_relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) and not target.startswith("//")


def _anchors(path: Path) -> set[str]:
    """The heading anchors GitHub makes for a markdown file (lowercase, punctuation dropped)."""
    seen: dict[str, int] = {}
    out = set()
    for title in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "").lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move detail into docs/"
    )


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path):
    broken = []
    for target in _links(doc):
        if not _is_relative(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target} (no such file: {dest})")
        elif anchor and dest.suffix == ".md" and anchor.lower() not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{doc.relative_to(ROOT)}: broken links:\n  " + "\n  ".join(broken)


def test_readme_has_the_ci_test_command():
    """.ci/run executes the first bash block after the test-command marker: it must be there."""
    text = README.read_text(encoding="utf-8")
    m = re.search(r"<!-- test-command[^>]*-->\s*\n```bash\n(.*?)\n```", text, re.S)
    assert m, "README.md: no ```bash block right after the <!-- test-command ... --> marker"
    commands = [ln for ln in m.group(1).splitlines() if ln.strip() and not ln.startswith("#")]
    assert commands and "pytest" in commands[-1], f"README.md: the test-command block runs no pytest: {commands}"


def test_readme_has_no_dates():
    """Dates, run logs and machine-load stories belong in docs/benchmarks.md, not the README."""
    years = [(i, ln) for i, ln in enumerate(README.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"(?<!\d)20\d\d(?!\d)", ln)]
    found = "; ".join(f"line {i}: {ln}" for i, ln in years)
    assert not years, f"README.md mentions a year (dates go to docs/): {found}"


def test_link_checker_sees_links():
    """Guard the checker itself: the README links to every docs page and its one picture."""
    targets = {t.partition("#")[0] for t in _links(README)}
    for page in ("data", "training", "overlay", "methods", "benchmarks", "architecture"):
        assert f"docs/{page}.md" in targets, f"README.md does not link docs/{page}.md"
    assert any(t.startswith("docs/images/") for t in targets), "README.md shows no picture from docs/images/"


def test_doc_images_are_small():
    """Pictures in docs/images stay compact (the repository is cloned by every CI run)."""
    big = [f"{p.name}: {p.stat().st_size // 1024} KB" for p in (ROOT / "docs" / "images").glob("*")
           if p.stat().st_size > 300 * 1024]
    assert not big, f"docs/images: files over 300 KB: {big}"
