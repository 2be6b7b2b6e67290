"""report.html: rendered from a real audit of the digits target, checked as a document, for
escaping and determinism, in a real browser, and shipped inside the wheel."""

from __future__ import annotations

import html
import re
import shutil
import socketserver
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from mia_audit.reports import report_format
from mia_audit.reports._templates import MARKER, find_templates
from mia_audit.reports.html_report import render_html
from mia_audit.result import AttackResult, Result
from tests.conftest import DigitsTarget, RunCli

REPO = Path(__file__).resolve().parents[1]
POLICY_NAME = "digits-html-report"
HOSTILE = "<script>alert(1)</script>"
#: Sections in the order a reader meets them (docs/reports.md).
SECTIONS = [
    "verdict",
    "gate",
    "attacks",
    "roc",
    "precision-recall",
    "scores",
    "classes",
    "vulnerable",
    "accuracy",
    "provenance",
]


def write_policy(folder: Path, formats: list[str]) -> Path:
    policy = {
        "version": 1,
        "name": POLICY_NAME,
        "model": {"path": "target.onnx", "architecture": "resnet18", "num_classes": 10},
        "data": {
            "members": "members.npz",
            "non_members": "non_members.npz",
            "class_names": [f"digit {n}" for n in range(10)],
        },
        "preprocessing": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]},
        "attacks": [
            "loss",
            "entropy",
            "logit_margin",
            "class_threshold",
            {"name": "learned", "model": "logistic_regression"},
        ],
        "gate": {"max_auc": 0.55, "max_advantage": 0.9},
        "outputs": {"dir": "out", "formats": formats},
        "runtime": {"device": "cpu", "seed": 0, "cache_dir": ".mia-cache"},
    }
    path = folder / "html-policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def audit_dir(
    digits_target: DigitsTarget, run_cli: RunCli, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """One real audit (exit 1: the overfit target fails max_auc 0.55); its output folder."""
    folder = digits_target.copy_to(tmp_path_factory.mktemp("html") / "target")
    completed = run_cli("run", write_policy(folder, ["json", "html"]), "-q")
    assert completed.returncode == 1, completed.stderr
    return folder / "out"


@pytest.fixture(scope="module")
def result(audit_dir: Path) -> Result:
    return Result.model_validate_json((audit_dir / "result.json").read_bytes())


@pytest.fixture(scope="module")
def page(audit_dir: Path) -> str:
    return (audit_dir / "report.html").read_text(encoding="utf-8")


# --- the document ---------------------------------------------------------------------------


class TagChecker(HTMLParser):
    """Checks that every element is closed in order (HTML void elements need no end tag)."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "col", "wbr", "source"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


def parse(page: str) -> TagChecker:
    checker = TagChecker()
    checker.feed(page)
    checker.close()
    return checker


def test_registered_as_report_html() -> None:
    assert report_format("html").filename == "report.html"


def test_page_is_well_formed_with_sections_in_order(page: str) -> None:
    checker = parse(page)
    assert checker.problems == [] and checker.stack == []
    ids = [attrs["id"] for tag, attrs in checker.tags if tag in ("header", "section")]
    assert ids == SECTIONS
    assert page.startswith("<!DOCTYPE html>")


def test_banner_comes_first_with_verdict_policy_and_exit_code(page: str, result: Result) -> None:
    banner = page[page.index('<header class="banner fail"') : page.index("</header>")]
    assert "FAIL" in banner and POLICY_NAME in banner
    assert "Exit code 1: a gate condition failed" in banner
    assert page.index("</header>") < page.index("<table")
    assert f"{len(result.gate.conditions) - 1} of {len(result.gate.conditions)}" in banner


def test_tables_show_gate_attacks_classes_samples_accuracy(page: str, result: Result) -> None:
    gate = page[page.index('id="gate"') : page.index('id="attacks"')]
    assert "AUC" in gate and "0.55" in gate and "fail" in gate and "pass" in gate
    attacks = page[page.index('id="attacks"') : page.index('id="roc"')]
    for attack in result.attacks:
        assert attack.id in attacks and f"{attack.auc:.4f}" in attacks
    assert "unsupported" in attacks  # 0.1 % FPR needs 10,000 non-members; the audit has 150
    assert "TPR at 0.1 % FPR" in attacks
    assert page.count("digit 7") >= 1  # class names from the policy
    strongest = max(result.attacks, key=lambda a: (a.tpr_at_fpr.get("0.05", 0.0), a.auc))
    assert strongest.most_vulnerable and strongest.most_vulnerable[0].id in page
    accuracy = page[page.index('id="accuracy"') : page.index('id="provenance"')]
    assert f"{100 * result.target.accuracy.members:.1f} %" in accuracy
    provenance = page[page.index('id="provenance"') :]
    for fact in (result.target.sha256, result.data.sha256, result.policy.sha256, "onnx"):
        assert fact in provenance


def test_plots_are_inline_svg(page: str) -> None:
    svgs = re.findall(r"<svg\b[^>]*>", page)
    assert len(svgs) == 3  # ROC (log-log and linear panels), precision-recall, histogram
    assert all("viewBox=" in svg for svg in svgs)
    roc = page[page.index('id="roc"') : page.index('id="precision-recall"')]
    assert "Log-log" in roc and "Linear" in roc
    pr = page[page.index('id="precision-recall"') : page.index('id="scores"')]
    assert "Recall (members found)" in pr and "confusion" in pr
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "element ids repeat across the inline SVGs"


def test_no_external_resources_or_script(page: str) -> None:
    lowered = page.lower()
    assert "<script" not in lowered
    assert not re.search(r"""\b(src|href|action|data|poster)\s*=\s*["']?\s*(https?:)?//""", lowered)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", lowered)
    assert "@import" not in lowered and "<link" not in lowered and "<iframe" not in lowered
    assert "default-src 'none'" in page  # CSP: even a future slip could not load anything


def test_same_result_renders_same_bytes(result: Result, audit_dir: Path) -> None:
    first = render_html(result)
    assert first == render_html(result)
    assert first == (audit_dir / "report.html").read_bytes()


# --- escaping -------------------------------------------------------------------------------


def hostile_attack(attack: AttackResult) -> AttackResult:
    per_class = [row.model_copy(update={"name": HOSTILE}) for row in attack.per_class]
    samples = [s.model_copy(update={"id": HOSTILE}) for s in attack.most_vulnerable]
    return attack.model_copy(
        update={
            "id": HOSTILE + attack.id,
            "summary": HOSTILE,
            "parameters": {HOSTILE: HOSTILE},
            "per_class": per_class,
            "most_vulnerable": samples,
        }
    )


def hostile_result(result: Result) -> Result:
    data = result.data.model_copy(
        update={
            "class_names": [HOSTILE] * 10,
            "notes": [HOSTILE],
            "sources": {
                HOSTILE + name: s.model_copy(update={"path": f"/data/{HOSTILE}.npz"})
                for name, s in result.data.sources.items()
            },
        }
    )
    hostile_fields = {"attack": HOSTILE, "description": HOSTILE, "slice": HOSTILE,
                      "note": HOSTILE, "waiver_reason": HOSTILE}  # fmt: skip
    conditions = [
        c.model_copy(update={**hostile_fields, "per_attack": {HOSTILE: c.value}, "waived": True})
        for c in result.gate.conditions
    ]
    updates: dict[str, Any] = {
        "policy": result.policy.model_copy(
            update={"name": HOSTILE, "path": f"/p/{HOSTILE}.yaml", "document": {HOSTILE: HOSTILE}}
        ),
        "target": result.target.model_copy(update={"path": f"/m/{HOSTILE}.onnx"}),
        "data": data,
        "attacks": [hostile_attack(a) for a in result.attacks],
        "gate": result.gate.model_copy(update={"conditions": conditions}),
        "environment": result.environment.model_copy(
            update={"gpu": HOSTILE, "versions": {HOSTILE: HOSTILE}}
        ),
        "timings": {HOSTILE: 1.0},
        "notes": [HOSTILE],
    }
    return result.model_copy(update=updates)


def test_hostile_strings_are_escaped_everywhere(result: Result) -> None:
    page = render_html(hostile_result(result)).decode("utf-8")
    assert HOSTILE not in page
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown, as text
    svg_text = "".join(re.findall(r"<svg\b.*?</svg>", page, flags=re.S))
    assert "&lt;script&gt;" in svg_text  # the attack ids in the plot legends
    checker = parse(page)
    assert checker.problems == [] and checker.stack == []


def test_dollar_signs_in_attack_ids_are_not_mathtext(result: Result) -> None:
    attacks = [a.model_copy(update={"id": f"$x_{i}$"}) for i, a in enumerate(result.attacks)]
    page = render_html(result.model_copy(update={"attacks": attacks})).decode("utf-8")
    assert "$x_0$" in "".join(re.findall(r"<svg\b.*?</svg>", page, flags=re.S))


# --- templates: found in the source tree, and shipped in the wheel ---------------------------


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


def test_wheel_ships_the_templates(tmp_path: Path) -> None:
    """Built without isolation when hatchling is installed (dev extras), so no network is used."""
    command = [sys.executable, "-m", "build", "--wheel", "-o", str(tmp_path), str(REPO)]
    try:
        import hatchling  # noqa: F401
    except ImportError:
        pass
    else:
        command.insert(4, "--no-isolation")
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    (wheel,) = tmp_path.glob("mia_audit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "mia_audit/templates/report.html.j2" in names
    assert "mia_audit/templates/report.css" in names
    assert "mia_audit/reports/html_report.py" in names and "mia_audit/cli/action.py" in names


# --- in a real browser ----------------------------------------------------------------------


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class _Recorder(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        first_line = self.request.recv(4096).split(b"\r\n", 1)[0]
        self.server.requests.append(first_line.decode("latin-1"))  # type: ignore[attr-defined]


@pytest.fixture()
def recording_proxy() -> Iterator[tuple[str, list[str]]]:
    """A local TCP server that records the first line of every request sent to it."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def request_host(line: str) -> str:
    """The host of a proxied request line: `GET http://host/path HTTP/1.1`, `CONNECT host:443`."""
    target = line.split(" ")[1] if line.count(" ") >= 1 else ""
    return (urlsplit(target if "://" in target else f"//{target}").hostname or "").lower()


def screenshot(browser: str, page: Path, png: Path, proxy: str, profile: Path) -> None:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--disable-extensions",
        "--disable-default-apps",
        "--no-pings",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,Translate",
        f"--proxy-server=http://{proxy}",
        "--proxy-bypass-list=<-loopback>",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        "--window-size=1280,4000",
        "--hide-scrollbars",
        page.as_uri(),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0 and png.is_file(), completed.stderr[-3000:]


#: matplotlib's default colour cycle (tab10): attack i's ROC curve is drawn in colour i % 10.
TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
         "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip


def colour_box(image: Any, *colors: str, tolerance: int = 40) -> tuple[int, ...] | None:
    """(count, left, top, right, bottom) of the pixels near any of `colors`, or None."""
    import numpy as np

    pixels = np.asarray(image, dtype=np.int32)[..., :3]
    mask = np.zeros(pixels.shape[:2], dtype=bool)
    for color in colors:
        target = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
        mask |= np.abs(pixels - target).sum(axis=-1) <= tolerance
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return int(xs.size), int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def colour_median_row(image: Any, color: str, tolerance: int = 40) -> float:
    """The median row of the pixels near `color`."""
    import numpy as np

    pixels = np.asarray(image, dtype=np.int32)[..., :3]
    target = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
    rows = np.nonzero(np.abs(pixels - target).sum(axis=-1) <= tolerance)[0]
    return float(np.median(rows))


@pytest.mark.skipif(chromium_binary() is None, reason="chromium is not installed (CI installs it)")
def test_renders_in_chromium_without_network(
    audit_dir: Path, result: Result, tmp_path: Path, recording_proxy: tuple[str, list[str]]
) -> None:
    """Screenshot the report in headless Chromium and look at the pixels.

    No network: Chromium sends every URL, loopback included (`--proxy-bypass-list=<-loopback>`,
    QUIC off), to a local proxy that records each request. Chromium also phones its own services
    (update checks, sign-in) despite the flags that turn most of that off, so a recorded request
    counts as the page's when its host appears in the page's text (HTML entities decoded): the
    page runs no JavaScript, so it can only fetch URLs written in it. A control page with one
    remote image proves such a request is recorded, so an empty list means "no request", not
    "not seen". The page must still render fully: banner, ROC curves and histogram drawn.
    """
    from PIL import Image, ImageStat

    browser = chromium_binary()
    assert browser is not None
    proxy, requests = recording_proxy
    control = tmp_path / "control.html"
    control.write_text('<html><body><img src="http://mia-audit-control.invalid/x.png"></body>')
    screenshot(browser, control, tmp_path / "control.png", proxy, tmp_path / "profile-control")
    assert any(request_host(line) == "mia-audit-control.invalid" for line in requests), requests
    requests.clear()

    png = tmp_path / "report.png"
    screenshot(browser, audit_dir / "report.html", png, proxy, tmp_path / "profile")
    text = html.unescape((audit_dir / "report.html").read_text(encoding="utf-8")).lower()
    from_page = [line for line in requests if request_host(line) in text]
    assert from_page == [], "\n".join(from_page)

    image = Image.open(png).convert("RGB")
    banner = image.crop((0, 0, image.width, 220))
    assert max(ImageStat.Stat(banner).stddev) > 20, "the banner area is blank"
    assert colour_box(banner, "#991b1b") is not None, "no red FAIL badge in the banner"
    curves = colour_box(image, *TAB10[: len(result.attacks)])  # ROC curves and their legend
    assert curves is not None and curves[0] > 500, "no ROC curves drawn"
    assert curves[3] - curves[1] > 500 and curves[4] - curves[2] > 250, "ROC curves too small"
    members = colour_box(image, "#c2410c")
    non_members = colour_box(image, "#1d4ed8")
    assert members is not None and non_members is not None, "no score histogram drawn"
    # A few anti-aliased pixels where curves cross can come near the histogram's colours, so
    # the histogram's place is where most of its pixels are, not its outermost pixel.
    assert colour_median_row(image, "#c2410c") > curves[4], "the histogram should follow the ROC"


#: Chromium's headless window is at least 500 px wide, so the report is laid out in an iframe
#: of the width under test; this script (in the page around it, with the report's own
#: Content-Security-Policy dropped from the copy: the report runs no script) measures the
#: iframe's document and writes the figures into the page, for `--dump-dom` to carry out.
LAYOUT_PAGE = """<!doctype html><html><body style="margin:0">
<iframe id="report" style="border:0;width:{width}px;height:3000px" srcdoc="{report}"></iframe>
<script>
window.addEventListener("load", () => {{
  const doc = document.getElementById("report").contentDocument;
  const box = (e) => e.getBoundingClientRect();
  const where = (e) => (e.closest("section") || doc.body).id + " " + e.className;
  const probe = document.createElement("pre");
  probe.id = "layout-probe";
  probe.textContent = JSON.stringify({{
    viewport: doc.documentElement.clientWidth,
    page: doc.documentElement.scrollWidth,
    tables: [...doc.querySelectorAll("table")].filter(
      (t) => box(t).width > 0 && !t.parentElement.closest("table")  // nested: in its box
    ).map((t) => ({{
      where: where(t), right: box(t).right, scroll: t.scrollWidth, client: t.clientWidth}})),
    plots: [...doc.querySelectorAll("figure svg")].map((s) => ({{
      width: box(s).width, box_right: box(s.closest("figure")).right}})),
  }});
  document.body.appendChild(probe);
}});
</script></body></html>"""


def chromium_command(browser: str, profile: Path, window: int, *args: str) -> list[str]:
    return [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", f"--user-data-dir={profile}",
        f"--window-size={window},3000", "--hide-scrollbars", *args,
    ]  # fmt: skip


def page_layout(browser: str, report: Path, width: int, work: Path) -> tuple[dict[str, Any], Path]:
    """The report's layout at `width` px (page, tables and plots, in px), and a screenshot."""
    import json

    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", report.read_text())
    page = work / f"layout-{width}.html"
    page.write_text(LAYOUT_PAGE.format(width=width, report=html.escape(text, quote=True)))
    window = max(width, 500) + 20
    command = chromium_command(browser, work / "profile", window, "--dump-dom", page.as_uri())
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', completed.stdout, flags=re.S)
    assert completed.returncode == 0 and found, completed.stderr[-3000:]
    png = work / f"layout-{width}.png"
    command = chromium_command(
        browser, work / "profile", window, f"--screenshot={png}", page.as_uri()
    )
    shot = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-3000:]
    layout: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return layout, png


@pytest.mark.skipif(chromium_binary() is None, reason="chromium is not installed (CI installs it)")
@pytest.mark.parametrize("width", [420, 1280])
def test_layout_fits_a_phone_and_a_desktop(audit_dir: Path, tmp_path: Path, width: int) -> None:
    """At 420 px (a phone) and 1280 px: the page never scrolls sideways, a table too wide for
    the screen scrolls inside its own box, and plots keep a readable width (at least 560 px,
    scrolling inside their figure) instead of shrinking until their labels cannot be read."""
    from PIL import Image

    browser = chromium_binary()
    assert browser is not None
    layout, png = page_layout(browser, audit_dir / "report.html", width, tmp_path)
    assert layout["viewport"] == width, layout
    assert layout["page"] <= width, layout  # nothing makes the page scroll sideways
    assert layout["tables"] and all(t["right"] <= width for t in layout["tables"]), layout
    assert layout["plots"] and all(p["width"] >= 560 for p in layout["plots"]), layout
    assert all(p["box_right"] <= width for p in layout["plots"]), layout
    if width == 420:  # the attack table does not fit a phone: it scrolls in its own box
        assert any(t["scroll"] > t["client"] for t in layout["tables"]), layout

    image = Image.open(png).convert("RGB").crop((0, 0, width, 600))
    badge = colour_box(image, "#991b1b")
    assert badge is not None and badge[3] < width, "the FAIL badge is not on screen"
