"""What an audit returns, to the CLI and the API alike: the `Result` plus per-sample scores.

The core writes no report: `write`, `to_html` and Jupyter's view render one when the caller
asks for it.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mia_audit.result import AttackResult, Result


@dataclass(frozen=True)
class AuditResult:
    """An audit's `Result` (what result.json holds) plus the per-sample scores.

    `scores[attack_id][i]` is sample i's membership score (higher: more likely a member);
    `is_member`, `labels` and `ids` describe the same samples, members first.
    """

    result: Result
    scores: Mapping[str, np.ndarray]
    is_member: np.ndarray
    labels: np.ndarray
    ids: np.ndarray

    @property
    def passed(self) -> bool:
        return self.result.passed

    @property
    def exit_code(self) -> int:
        """What `mia-audit run` would exit with: 0 pass, 1 a gate condition failed."""
        return self.result.exit_code

    @property
    def attacks(self) -> list[AttackResult]:
        return self.result.attacks

    def attack(self, attack_id: str) -> AttackResult:
        """One attack's figures (AUC, TPR at FPR, CIs, epsilon bound, slices) by its id."""
        return self.result.attack(attack_id)

    def to_json(self) -> str:
        return self.result.to_json()

    def to_html(self) -> str:
        """The self-contained HTML report (what report.html holds)."""
        from mia_audit.reports import report_format

        return report_format("html").render(self.result).decode("utf-8")

    def write(self, directory: str | os.PathLike[str], formats: Sequence[str] = ()) -> list[Path]:
        """Write the reports (default: json, html, markdown) into `directory`, as one set."""
        from mia_audit.reports import render_reports, write_reports

        chosen = list(formats) or ["json", "html", "markdown"]
        return write_reports(render_reports(self.result, chosen), Path(directory))

    def _repr_html_(self) -> str:
        """Jupyter shows the report in a sandboxed frame, so its styles stay its own."""
        page = html.escape(self.to_html(), quote=True)
        return (
            f'<iframe srcdoc="{page}" sandbox style="width:100%;height:760px;border:0" '
            'title="mia-audit report"></iframe>'
        )
