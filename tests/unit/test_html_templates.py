"""The HTML report's registration and where its templates are found."""

from __future__ import annotations

from pathlib import Path

import pytest

from mia_audit.reports import report_format
from mia_audit.reports._templates import MARKER, find_templates


def test_registered_as_report_html() -> None:
    assert report_format("html").filename == "report.html"


def test_templates_found_in_package_or_source_tree(tmp_path: Path) -> None:
    assert (find_templates() / MARKER).is_file()
    installed = tmp_path / "site-packages" / "mia_audit"
    (installed / "templates").mkdir(parents=True)
    (installed / "templates" / MARKER).write_text("x")
    assert find_templates(installed) == installed / "templates"
    checkout = tmp_path / "checkout"
    (checkout / "mia_audit").mkdir(parents=True)
    (checkout / "templates").mkdir()
    (checkout / "templates" / MARKER).write_text("x")
    assert find_templates(checkout / "mia_audit") == checkout / "templates"
    with pytest.raises(FileNotFoundError, match="templates are missing"):
        find_templates(tmp_path / "nowhere" / "mia_audit")


