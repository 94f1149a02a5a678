"""The HTML report (``assay.html``): its structure read back by an HTML parser, escaping of
user data, the size of a 1,000-slice page, every kind of input, ``assay report`` on a saved run,
and the page in a real browser: headless Chromium (Debian's ``chromium``) driven over the
DevTools protocol reads the DOM, clicks a header and checks the order, filters, checks that the
page made no request and logged no error, times the 1,000-slice page, and saves screenshots to
``$ASSAY_ARTIFACTS`` (default: a pytest temporary directory)."""

from __future__ import annotations

import doctest
import math
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from cdp import Browser, _chromium

import assay
import assay.html
from assay.demo import make_comparison_data, make_data
from assay.html import render, write
from assay.report import Report

# ------------------------------------------------------------------------------------------
# a small DOM, built by the standard library's HTML parser

_VOID = {"meta", "link", "input", "br", "col", "img", "hr", "wbr", "source", "area"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def find_all(self, tag: str, **attrs: str) -> list[Node]:
        out = []
        for c in self.children:
            if isinstance(c, Node):
                if c.tag == tag and all(c.attrs.get(k) == v for k, v in attrs.items()):
                    out.append(c)
                out += c.find_all(tag, **attrs)
        return out

    def find(self, tag: str, **attrs: str) -> Node:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag} {attrs}>"
        return found[0]


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.at = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs), self.at)
        self.at.children.append(node)
        if tag not in _VOID:
            self.at = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.at.children.append(Node(tag, dict(attrs), self.at))

    def handle_endtag(self, tag: str) -> None:
        node = self.at
        while node is not None and node.tag != tag:
            node = node.parent
        assert node is not None and node.parent is not None, f"stray </{tag}>"
        self.at = node.parent

    def handle_data(self, data: str) -> None:
        self.at.children.append(data)


def dom(page: str) -> Node:
    p = _Parser()
    p.feed(page)
    p.close()
    assert p.at is p.root, "unclosed elements"
    return p.root


def slice_table(page: str) -> tuple[list[str], list[list[Node]], list[list[Node]]]:
    """The slice table's headers, its pinned rows and its sortable rows (cells as nodes)."""
    table = dom(page).find("table", id="slice-table")
    headers = [th.text for th in table.find("thead").find_all("th")]
    bodies = table.find_all("tbody")
    pinned = [b for b in bodies if "pinned" in b.classes]
    rows = [[td for td in tr.find_all("td")] for tr in bodies[-1].find_all("tr")]
    pin = [[td for td in tr.find_all("td")] for b in pinned for tr in b.find_all("tr")]
    return headers, pin, rows


def first_text(td: Node) -> str:
    """A cell's value without its interval (what the page's sort reads)."""
    first = td.children[0] if td.children else ""
    return first if isinstance(first, str) else first.text


def lead_columns(rep: Report) -> list[str]:
    """The table's columns before the metrics: the slice, its spec (when the report has
    one), its rows."""
    return ["slice", *(["spec"] if "spec" in rep.table.columns else []), "n"]


def number(text: str) -> float:
    return float("nan") if text in ("\u2013", "") else float(text.replace(",", ""))


# ------------------------------------------------------------------------------------------
# results


@pytest.fixture(scope="module")
def demo() -> pl.DataFrame:
    return pl.from_arrow(make_data(20_000, seed=0))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def report(demo: pl.DataFrame) -> Report:
    return assay.evaluate(demo, label="churned", score="p_churn",
                          slices=["country", "device", ("country", "plan"),
                                  assay.bins("age", 4)], bootstrap=100, seed=0)


@pytest.fixture(scope="module")
def comparison() -> assay.Comparison:
    t = make_comparison_data(20_000, seed=0)
    return assay.compare(t, label="churned", scores={"prod": "p_old", "cand": "p_new"},
                         slices=["country", "device"], metrics=["roc_auc", "log_loss"],
                         bootstrap=100)


@pytest.fixture(scope="module")
def discovery(demo: pl.DataFrame) -> pl.DataFrame:
    return assay.discover_slices(demo, label="churned", score="p_churn",
                                 features=["country", "device", "plan"])


@pytest.fixture(scope="module")
def reliability(demo: pl.DataFrame) -> pl.DataFrame:
    return assay.reliability(demo, label="churned", score="p_churn", slices=["country"],
                             strategy="quantile", n_bins=8)


NASTY = ["<script>alert(1)</script>", "say \"hi\" & 'bye'", "</table>", "a &amp; b",
         "<!-- x", "\u202eevil"]


@pytest.fixture(scope="module")
def nasty() -> Report:
    rng = np.random.default_rng(1)
    n = 6_000
    y = rng.integers(0, 2, n)
    p = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
    g = np.array(NASTY, dtype=object)[rng.integers(0, len(NASTY), n)]
    return assay.evaluate({"y": y, "p": p, "<g>": g}, label="y", score="p", slices=["<g>"],
                          metrics=["roc_auc", "accuracy"], bootstrap=50)


@pytest.fixture(scope="module")
def big() -> Report:
    """1,000 slices (a high-cardinality column), every metric, with intervals."""
    rng = np.random.default_rng(2)
    n = 150_000
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    g = rng.permutation(np.resize(np.arange(1000), n)).astype(str)
    return assay.evaluate({"y": y, "p": p, "g": g}, label="y", score="p", slices=["g"],
                          bootstrap=30)


# ------------------------------------------------------------------------------------------
# structure


def test_report_page_has_one_row_per_slice_and_the_metrics_as_headers(report):
    page = render(report)
    assert page.startswith("<!DOCTYPE html>")
    headers, pinned, rows = slice_table(page)
    assert headers == [*lead_columns(report), *report.metrics, "worse in"]
    assert len(pinned) == 1 and pinned[0][0].text == "overall"
    assert [r[0].text for r in rows] == report.table["slice"].to_list()[1:]
    n = report.table["n"].to_list()
    assert [number(r[headers.index("n")].text) for r in pinned + rows] == n
    if "spec" in report.table.columns:
        assert [r[1].text for r in pinned + rows] == report.table["spec"].to_list()
    # Each metric cell holds the value, then its interval.
    auc = headers.index("roc_auc")
    value, lo, hi = report.table.row(1, named=True)["roc_auc"], \
        report.table.row(1, named=True)["roc_auc_lo"], report.table.row(1, named=True)["roc_auc_hi"]
    cell = rows[0][auc]
    assert math.isclose(number(first_text(cell)), value, rel_tol=1e-3)
    interval = cell.find("i").text
    assert interval.startswith("[") and interval.endswith("]")
    got_lo, got_hi = (float(x) for x in interval[1:-1].split(", "))
    assert math.isclose(got_lo, lo, rel_tol=1e-3) and math.isclose(got_hi, hi, rel_tol=1e-3)
    # Self-contained: no external reference of any kind, one script, a policy forbidding
    # requests.
    assert not re.search(r"(src|href)=\"(?!data:)", page)
    assert "http://" not in page and "https://" not in page
    assert page.count("<script") == 1
    assert "default-src 'none'" in page


def test_worse_than_overall_is_highlighted_by_direction(report):
    headers, _, rows = slice_table(render(report))
    table = report.table
    overall = table.row(0, named=True)
    for metric, worse_when in (("roc_auc", "hi_below"), ("log_loss", "lo_above"),
                               ("fpr", "lo_above"), ("base_rate", None)):
        col = headers.index(metric)
        flagged = [r[0].text for r in rows if "w" in r[col].classes]
        if worse_when is None:  # no direction: never highlighted
            assert flagged == []
            continue
        ref = overall[metric]
        expr = (pl.col(f"{metric}_hi") < ref) if worse_when == "hi_below" else \
            (pl.col(f"{metric}_lo") > ref)
        expected = table.slice(1).filter(expr)["slice"].to_list()
        assert flagged == expected, metric
    assert any("w" in c.classes for r in rows for c in r), "the demo has worse slices"
    # The "worse in" column counts a row's highlighted cells.
    for r in rows:
        assert number(r[-1].text) == sum("w" in c.classes for c in r[:-1])


def test_report_without_intervals_flags_nothing(demo):
    rep = assay.evaluate(demo, label="churned", score="p_churn", slices=["country"],
                         metrics=["roc_auc", "log_loss"])
    page = render(rep)
    headers, _, rows = slice_table(page)
    assert headers == [*lead_columns(rep), "roc_auc", "log_loss"]
    assert len(rows) == rep.table.height - 1
    assert not any("w" in c.classes for r in rows for c in r)
    assert "no intervals" in page


def test_user_data_is_escaped(nasty):
    page = render(nasty, title="</title><script>alert(2)</script>")
    for raw in ("<script>alert(1)</script>", "=</table>", "<script>alert(2)</script>", "<!--"):
        assert raw not in page
    assert page.count("<script") == 1 and page.count("</table>") == page.count("<table")
    headers, _, rows = slice_table(page)
    assert headers[:len(lead_columns(nasty))] == lead_columns(nasty)
    assert len(rows) == nasty.table.height - 1 == len(NASTY)
    # The text reads back exactly (control and bidi characters made visible, as in a
    # terminal).
    from assay._text import escape

    assert sorted(r[0].text for r in rows) == sorted(f"<g>={escape(v)}" for v in NASTY)
    doc = dom(page)
    assert doc.find("title").text == "</title><script>alert(2)</script>"
    assert "\u202e" not in page
    # Chart labels too.
    labels = [t.find("title").text for t in doc.find_all("text") if "label" in t.classes]
    assert labels and all("<" not in t or t.startswith("<g>=") for t in labels)


def test_a_thousand_slice_report_stays_under_2_mb(big):
    assert big.table.height == 1001
    page = render(big)
    size = len(page.encode("utf-8"))
    assert size < 2_000_000, size
    headers, pinned, rows = slice_table(page)
    assert len(pinned) + len(rows) == 1001
    assert len(headers) == len(lead_columns(big)) + len(big.metrics) + 1
    # Large tables open with their intervals hidden; a checkbox shows them.
    table = dom(page).find("table", id="slice-table")
    assert "hide-ci" in table.classes
    # The chart shows the worst 30 only.
    assert len(dom(page).find_all("circle")) == assay.html.MAX_CHART_ROWS


def test_comparison_page_states_the_correction_and_the_verdicts(comparison):
    page = render(comparison)
    headers, pinned, rows = slice_table(page)
    assert headers[:4] == ["slice", "metric", "model", "n"]
    assert "verdict" in headers and "p adjusted" in headers
    table = comparison.table
    assert len(pinned) + len(rows) == table.height
    assert len(pinned) == table.filter(pl.col("slice") == "overall").height
    verdict = headers.index("verdict")
    got = [(r[0].text, r[1].text, r[verdict].text, "w" in r[0].parent.classes)  # type: ignore
           for r in pinned + rows]
    want = [(s, m, v or "", v == "worse") for s, m, v in table.sort(
        pl.col("slice") != "overall", maintain_order=True).select(
        "slice", "metric", "verdict_adjusted").rows()]
    assert got == want
    assert "correction <b>simultaneous</b>" in page
    holm = render(comparison.with_correction("holm"))
    assert "correction <b>holm</b>" in holm and "Holm-adjusted" in holm
    # The delta chart: one of the metrics, a zero line.
    assert 'class="zero"' in page


@pytest.mark.parametrize("regressions", [False, True], ids=["slices", "regressions"])
def test_discovery_pages(discovery, regressions):
    if regressions:
        t = make_comparison_data(20_000, seed=0)
        table = assay.discover_regressions(t, label="churned",
                                           scores={"prod": "p_old", "cand": "p_new"},
                                           features=["country", "device"])
    else:
        table = discovery
    page = render(table)
    headers, pinned, rows = slice_table(page)
    assert pinned == []
    assert [r[headers.index("slice")].text for r in rows] == table["slice"].to_list()
    assert "predicates" not in headers
    sig = table["significant"].to_list()
    assert [("w" in r[0].parent.classes) for r in rows] == sig  # type: ignore[union-attr]
    assert ("Discovered regressions" if regressions else "Discovered slices") in page


def test_reliability_page_draws_bins_at_their_true_widths(reliability):
    page = render(reliability)
    doc = dom(page)
    diagrams = doc.find_all("svg")
    slices = reliability["slice"].unique(maintain_order=True).to_list()
    assert len(diagrams) == min(len(slices), assay.html.MAX_DIAGRAMS)
    assert diagrams[0].find("title").text == "overall"
    bins = reliability.filter(pl.col("slice") == "overall").filter(pl.col("count") > 0)
    bars = [b for b in diagrams[0].find_all("rect") if "bar" in b.classes]
    assert len(bars) == bins.height
    widths = np.array([float(b.attrs["width"]) for b in bars])  # type: ignore[arg-type]
    true = (bins["upper"] - bins["lower"]).to_numpy()
    # Quantile bins differ in width: the bars follow them (one scale for all).
    assert true.max() / true.min() > 5
    scale = widths / true
    assert np.allclose(scale[widths > 1], scale[widths > 1][0], rtol=0.05)
    # Each bar's area is its rows.
    heights = np.array([float(b.attrs["height"]) for b in bars])  # type: ignore[arg-type]
    area = widths * heights
    assert np.allclose(area / bins["count"].to_numpy(), area[0] / bins["count"][0], rtol=0.05)
    headers, pinned, rows = slice_table(page)
    assert headers[:2] == ["slice", "rows"] and "ECE" in headers
    assert len(pinned) + len(rows) == len(slices)


def test_provenance_section(report, monkeypatch):
    class Fake:
        def to_dict(self) -> dict[str, Any]:
            return {"format": 1, "kind": "evaluate", "assay_version": "9.9",
                    "created": "2026-01-02T03:04:05+00:00",
                    "input": {"rows": 20_000, "schema": [["<b>col</b>", "double"]],
                              "content_hash": "00ff00ff00ff00ff"},
                    "git_commit": "a" * 40, "spec": {"label": "</pre><script>x()</script>"}}

    monkeypatch.setattr(Report, "provenance", property(lambda self: Fake()), raising=False)
    page = render(report)
    section = dom(page).find("section", id="provenance")
    text = section.text
    for want in ("9.9", "2026-01-02T03:04:05+00:00", "20,000", "00ff00ff00ff00ff", "a" * 40,
                 "<b>col</b>", "</pre><script>x()</script>"):
        assert want in text, want
    assert "<script>x()" not in page and "<b>col</b>" not in page
    # Nothing recorded: no section.
    monkeypatch.setattr(Report, "provenance", property(lambda self: None), raising=False)
    assert 'id="provenance"' not in render(report)


def test_write_and_errors(report, tmp_path):
    out = write(report, tmp_path / "r.html", title="Model \u00e9t\u00e9")
    assert out == tmp_path / "r.html"
    text = out.read_bytes().decode("utf-8")
    assert "<title>Model \u00e9t\u00e9</title>" in text
    with pytest.raises(assay.InvalidArgumentError, match="render takes"):
        render(pl.DataFrame({"a": [1]}))
    with pytest.raises(assay.InvalidArgumentError, match="render takes"):
        render(42)
    with pytest.raises(assay.InvalidArgumentError, match="not in the report"):
        render(report, metric="nope")
    assert "log_loss by slice" in render(report, metric="log_loss")


def test_docstring_examples_run():
    result = doctest.testmod(assay.html, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------------------------------
# assay report RUN


def _saved(obj: Any, path: Path) -> Path:
    obj.save(str(path))
    return path


def test_cli_report_writes_the_page_of_a_saved_run(report, tmp_path, capsys):
    from assay.cli import main

    run = _saved(report, tmp_path / "run.assay.parquet")
    out = tmp_path / "report.html"
    assert main(["report", str(run), "-o", str(out), "--title", "Saved <run>"]) == 0
    page = out.read_text(encoding="utf-8")
    headers, pinned, rows = slice_table(page)
    assert len(pinned) + len(rows) == report.table.height
    assert "<h1>Saved &lt;run&gt;</h1>" in page
    # Without -o: the page on stdout (a real process: stdout as bytes, UTF-8).
    env = {**os.environ, "ASSAY_ALLOW_DEBUG_BUILD": "1"}
    p = subprocess.run([sys.executable, "-m", "assay", "report", str(run)], capture_output=True,
                       env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode("utf-8") == render(assay.load(str(run)))


def test_cli_report_of_a_saved_comparison(comparison, tmp_path):
    from assay.cli import main

    run = _saved(comparison, tmp_path / "cmp.assay.parquet")
    out = tmp_path / "cmp.html"
    assert main(["report", str(run), "-o", str(out)]) == 0
    assert "correction <b>simultaneous</b>" in out.read_text(encoding="utf-8")


def test_cli_report_errors(tmp_path, capsys):
    from assay.cli import main

    assert main(["report", str(tmp_path / "missing.assay.parquet")]) == 3
    assert "cannot read the saved run" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "x.html")]) == 3
    assert "is a directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "r.parquet"), "-o",
                 str(tmp_path / "no" / "such" / "dir.html")]) == 2
    assert "does not exist" in capsys.readouterr().err
    other = tmp_path / "plain.parquet"
    pl.DataFrame({"a": [1, 2]}).write_parquet(other)
    assert main(["report", str(other)]) == 3
    assert "assay: error:" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# a real browser: headless Chromium over the DevTools protocol (the driver is tests/cdp.py,
# shared with benches/bench_html.py)


def _missing(reason: str) -> None:
    # CI sets ASSAY_REQUIRE_BROWSER=1: there a missing browser fails instead of skipping.
    if os.environ.get("ASSAY_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " (ASSAY_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        import websocket  # noqa: F401
    except ImportError:
        _missing("the browser test needs websocket-client (pip install websocket-client)")
    exe = _chromium()
    if not exe:
        _missing("the browser test needs Chromium (apt-get install chromium)")
    b = Browser(exe)
    yield b
    b.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    d = os.environ.get("ASSAY_ARTIFACTS")
    path = Path(d) if d else tmp_path_factory.mktemp("html-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _page_ok(b: Browser, path: Path) -> None:
    """No console error, no dialog, and no request but the file itself."""
    assert b.errors() == []
    assert [u for u in b.requests() if u != path.resolve().as_uri()] == []


_ROWS = "Array.from(document.querySelectorAll('#slice-table tbody:last-of-type tr'))"


def test_browser_reads_rows_sorts_and_filters(browser, report, artifacts, tmp_path):
    path = write(report, tmp_path / "report.html")
    browser.open(path)
    headers = browser.js("Array.from(document.querySelectorAll('#slice-table thead th'))"
                         ".map(th => th.textContent)")
    assert headers == [*lead_columns(report), *report.metrics, "worse in"]
    slices = browser.js(f"{_ROWS}.map(r => r.cells[0].textContent)")
    assert slices == report.table["slice"].to_list()[1:]
    browser.screenshot(artifacts / "report.png")

    col = headers.index("roc_auc")
    expected = report.table.slice(1).filter(pl.col("roc_auc").is_not_null())
    for direction in ("ascending", "descending"):
        browser.click(f"#slice-table thead th:nth-child({col + 1})")
        assert browser.js(f"document.querySelectorAll('#slice-table thead th')[{col}]"
                          ".getAttribute('aria-sort')") == direction
        got = browser.js(f"{_ROWS}.map(r => r.cells[0].textContent)")
        want = expected.sort("roc_auc", descending=direction == "descending",
                             maintain_order=True)["slice"].to_list()
        assert got[:len(want)] == want
        values = [number(v) for v in browser.js(
            f"{_ROWS}.map(r => r.cells[{col}].firstChild.textContent)")]
        assert values == sorted(values, reverse=direction == "descending")
    # The overall row stays pinned above.
    assert browser.js("document.querySelector('#slice-table tbody.pinned td')"
                      ".textContent") == "overall"

    browser.type_into("input[data-filter]", "ng")
    visible = browser.js(f"{_ROWS}.filter(r => !r.hidden).map(r => r.cells[0].textContent)")
    assert sorted(visible) == sorted(s for s in slices if "ng" in s.lower())
    assert browser.js("document.querySelector('.count').textContent").startswith(
        f"{len(visible)} of ")
    _page_ok(browser, path)


def test_browser_escaping(browser, nasty, tmp_path):
    path = write(nasty, tmp_path / "nasty.html", title="<script>alert(2)</script>")
    browser.open(path)
    from assay._text import escape

    assert browser.js("document.scripts.length") == 1
    tables = path.read_text(encoding="utf-8").count("<table")
    assert browser.js("document.querySelectorAll('table').length") == tables
    cells = browser.js(f"{_ROWS}.map(r => r.cells[0].textContent)")
    assert sorted(cells) == sorted(f"<g>={escape(v)}" for v in NASTY)
    assert browser.js("document.title") == "<script>alert(2)</script>"
    _page_ok(browser, path)


def test_browser_other_pages(browser, comparison, discovery, reliability, artifacts, tmp_path):
    for name, obj, rows in (("comparison", comparison, comparison.table.height),
                            ("discovery", discovery, discovery.height),
                            ("reliability", reliability,
                             reliability["slice"].n_unique())):
        path = write(obj, tmp_path / f"{name}.html")
        browser.open(path)
        got = browser.js("document.querySelectorAll('#slice-table tbody tr').length")
        assert got == rows, name
        browser.screenshot(artifacts / f"{name}.png")
        png = (artifacts / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
        _page_ok(browser, path)


def test_browser_opens_a_thousand_slices(browser, big, artifacts, tmp_path):
    # (No time is asserted: benches/bench_html.py measures the load time, RESULTS.md records
    # it.)
    path = write(big, tmp_path / "big.html")
    times = []
    for _ in range(3):
        browser.open(path)
        # Until the first frame after load: parsing, style, layout and the script.
        times.append(browser.js(
            "new Promise(r => requestAnimationFrame(() => setTimeout(() => "
            "r(performance.now()), 0)))"))
        _page_ok(browser, path)
    assert browser.js("document.querySelectorAll('#slice-table tbody tr').length") == 1001
    assert all(t > 0 for t in times), times
    # Sorting a thousand rows, then showing their intervals.
    col = len(lead_columns(big)) + big.metrics.index("roc_auc")
    browser.click(f"#slice-table thead th:nth-child({col + 1})")
    values = [number(v) for v in browser.js(
        f"{_ROWS}.map(r => r.cells[{col}].firstChild.textContent)")]
    finite = [v for v in values if not math.isnan(v)]
    assert finite == sorted(finite) and len(finite) > 900
    browser.click("input[data-intervals]")
    assert not browser.js("document.getElementById('slice-table').classList"
                          ".contains('hide-ci')")
    browser.screenshot(artifacts / "thousand-slices.png", full=False)
    _page_ok(browser, path)
