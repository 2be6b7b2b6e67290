"""The documentation a user reads is held to the repository: links that resolve, every policy key
named. mkdocs checks the links between the pages of docs/ (`mkdocs build --strict` in `make
lint`); the Markdown files at the root are not part of that site, so their links are checked
here, the way GitHub renders them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPOSITORY, USER_DOCS

ROOT_PAGES = sorted(REPOSITORY.glob("*.md"))
#: `[text](target)`, not inside inline code; an image is a link too.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors: lower case, punctuation but `-` and `_` dropped, spaces to `-`."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```|`[^`\n]*`", "", path.read_text(encoding="utf-8"), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", ROOT_PAGES, ids=lambda p: p.name)
def test_links_of_the_root_pages_resolve(page: Path) -> None:
    for target in relative_links(page):
        file, _, anchor = target.partition("#")
        destination = (page.parent / file).resolve() if file else page
        assert destination.exists(), f"{page.name}: {target}: no such file"
        if anchor and destination.suffix == ".md":
            assert anchor in heading_anchors(destination), f"{page.name}: {target}: no heading"


def test_the_readme_links_every_page_of_docs() -> None:
    """The README's table of contents is the way in: a page it does not list is not found."""
    listed = {Path(t.partition("#")[0]).name for t in relative_links(REPOSITORY / "README.md")}
    pages = {path.name for path in (REPOSITORY / "docs").glob("*.md")} - {"index.md"}
    assert pages - listed == set()


def schema_keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = set(node.get("properties", {}))
        return own.union(*(schema_keys(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(schema_keys(value) for value in node))
    return set()


def test_every_policy_key_is_named_in_the_docs() -> None:
    schema = json.loads((REPOSITORY / "policies" / "policy.schema.json").read_text())
    text = "\n".join(path.read_text(encoding="utf-8") for path in USER_DOCS)
    keys = schema_keys(schema)
    assert len(keys) > 50  # the walk found the policy's keys, not an empty schema
    undocumented = sorted(k for k in keys if not re.search(rf"(?<!\w){re.escape(k)}(?!\w)", text))
    assert undocumented == []
