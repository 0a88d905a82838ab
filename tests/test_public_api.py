"""The public surface is pinned by docs/api.md: each module's ``__all__`` must be exactly the names listed there.

Adding, removing or renaming a public name therefore fails here until docs/api.md says so too (with a one-line
description and the guide that explains it), so the surface cannot change silently.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import stalwart

API_PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"

# The modules docs/api.md must document: the package and its public subpackages.
DOCUMENTED_MODULES = (
    "stalwart",
    "stalwart.httpx",
    "stalwart.asgi",
    "stalwart.idempotency",
    "stalwart.idempotency.stores.redis",
    "stalwart.idempotency.stores.postgres",
    "stalwart.redis",
    "stalwart.instrumentation",
    "stalwart.testing",
    "stalwart.pytest_plugin",
)

_MODULE_HEADING = re.compile(r"^## `(stalwart[\w.]*)`\s*$")
_TABLE_ROW_NAME = re.compile(r"^\| `([^`]+)` \|")
_LINK = re.compile(r"\]\(([^)#]+)(?:#[^)]*)?\)")


def documented_names(text: str) -> dict[str, list[str]]:
    """``{module: [name, ...]}`` from the page: the first cell of each table row under a ``## `module``` heading."""
    names: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        heading = _MODULE_HEADING.match(line)
        if heading:
            current = names.setdefault(heading.group(1), [])
        elif line.startswith("## "):
            current = None  # a section that documents no module
        elif current is not None and (row := _TABLE_ROW_NAME.match(line)):
            current.append(row.group(1))
    return names


@pytest.fixture(scope="module")
def page() -> dict[str, list[str]]:
    return documented_names(API_PAGE.read_text(encoding="utf-8"))


def test_the_parser_reads_module_sections_and_table_rows() -> None:
    text = "\n".join(
        [
            "# Public API",
            "## `stalwart`",
            "### Timeouts",
            "| name | what it is | guide |",
            "|---|---|---|",
            "| `Timeout` | a policy | [timeouts.md](timeouts.md) |",
            "| `stop` | `a \\| b` | x |",
            "## `stalwart.httpx`",
            "| `ResilientClient` | a client | x |",
            "## The `stalwart` command",
            "| `ignored` | not a module section | x |",
        ]
    )
    assert documented_names(text) == {"stalwart": ["Timeout", "stop"], "stalwart.httpx": ["ResilientClient"]}


def test_stalwart_all_is_sorted() -> None:
    assert list(stalwart.__all__) == sorted(stalwart.__all__)


def test_the_page_documents_exactly_the_public_modules(page: dict[str, list[str]]) -> None:
    assert sorted(page) == sorted(DOCUMENTED_MODULES)


@pytest.mark.parametrize("module_name", DOCUMENTED_MODULES)
def test_all_equals_the_documented_list(page: dict[str, list[str]], module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = list(module.__all__)
    documented = page.get(module_name, [])
    assert len(documented) == len(set(documented)), f"docs/api.md lists a name twice under `{module_name}`"
    missing_from_page = sorted(set(exported) - set(documented))
    not_exported = sorted(set(documented) - set(exported))
    assert (missing_from_page, not_exported) == ([], []), (
        f"`{module_name}.__all__` and docs/api.md disagree: add the new names to the page (with a one-line "
        f"description and their guide) or remove the stale ones"
    )
    for name in exported:
        assert hasattr(module, name), f"`{module_name}.__all__` names {name!r}, which the module does not define"


def test_the_pinned_stalwart_surface(page: dict[str, list[str]]) -> None:
    # The documented list, sorted, is the package's __all__ itself, in the same order.
    assert sorted(page["stalwart"]) == list(stalwart.__all__)


def test_every_guide_the_page_links_to_exists() -> None:
    links = set(_LINK.findall(API_PAGE.read_text(encoding="utf-8")))
    assert links, "docs/api.md links to no guide"
    missing = sorted(link for link in links if not (API_PAGE.parent / link).is_file())
    assert missing == []
