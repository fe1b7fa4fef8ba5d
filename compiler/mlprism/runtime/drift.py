"""Data drift: compare the current data with the reference, column by column.

Statistics, for every compared column:

- **numeric** columns (every non-empty reference value parses as a number):
  PSI over the reference's deciles (fewer quantile bins when a sample has under 200 rows:
  about 20 rows per bin), the two-sample Kolmogorov-Smirnov statistic D
  (with scipy's p-value when scipy is installed), and chi-squared over the same bins.
- **categorical** columns: PSI over the categories and chi-squared (with Cramér's V).

PSI = sum over bins of ``(cur% - ref%) * ln(cur% / ref%)``, where an empty bin counts as
``EPSILON`` (0.0001) so the logarithm stays finite.

``method`` picks the score compared with ``threshold`` (a column drifts when its score is
above it): ``psi`` → PSI; ``ks`` → KS D for numeric columns (categorical columns have no
order, they use Cramér's V); ``chi2`` → Cramér's V, the chi-squared effect size in [0, 1].
Scores are effect sizes rather than p-values on purpose: with a large sample every tiny
difference becomes "significant", yet a PSI of 0.2 or a D of 0.2 means the same thing
for 1 000 rows or 1 000 000. The p-values are in the report for reference.

A report is JSON (``drift.json``) plus a self-contained HTML page (``drift.html``) with
a bar chart (inline SVG) of each drifted column and a table of every column.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlprism.diagnostics import Diagnostic, DiagnosticError, did_you_mean

__all__ = [
    "EPSILON",
    "METHODS",
    "ColumnDrift",
    "DriftReport",
    "MonitorResult",
    "check_drift",
    "chi2_test",
    "compare",
    "compare_files",
    "ks_statistic",
    "monitor_once",
    "n_bins",
    "numeric_edges",
    "psi",
    "read_table",
    "render_html",
    "run_retrain",
    "should_retrain",
]

EPSILON = 1e-4
METHODS = ("psi", "ks", "chi2")
N_BINS = 10
MIN_PER_BIN = 20             # rows per numeric bin, on average, in the smaller sample
MAX_CATEGORIES = 30          # categories shown in a chart (the rest are summed as "other")


@dataclass
class ColumnDrift:
    name: str
    kind: str                              # "numeric" or "categorical"
    score_name: str                        # "psi", "ks" or "cramers_v"
    score: float
    drifted: bool
    psi: float
    chi2: float | None
    chi2_pvalue: float | None
    cramers_v: float | None
    ks: float | None = None                # numeric only
    ks_pvalue: float | None = None
    n_reference: int = 0
    n_current: int = 0
    missing_reference: int = 0             # empty (or, for numeric columns, non-numeric) values
    missing_current: int = 0
    mean_reference: float | None = None
    mean_current: float | None = None
    bins: list[str] = field(default_factory=list)
    reference_share: list[float] = field(default_factory=list)
    current_share: list[float] = field(default_factory=list)


@dataclass
class DriftReport:
    reference: str
    current: str
    method: str
    threshold: float
    columns: list[ColumnDrift]
    skipped: dict[str, str] = field(default_factory=dict)     # column -> why it was not compared
    reference_rows: int = 0
    current_rows: int = 0
    created_at: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return any(c.drifted for c in self.columns)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "drift", "drifted": self.drifted, "drifted_columns": self.drifted_columns,
                "method": self.method, "threshold": self.threshold, "reference": self.reference,
                "current": self.current, "reference_rows": self.reference_rows,
                "current_rows": self.current_rows, "created_at": self.created_at,
                "columns": [_clean(asdict(c)) for c in self.columns], "skipped": self.skipped, **self.meta}

    def summary(self) -> str:
        head = (f"drift ({self.method} > {self.threshold:g}): {len(self.drifted_columns)} of "
                f"{len(self.columns)} column(s) drifted")
        lines = [head]
        for c in sorted(self.columns, key=lambda c: -c.score):
            if c.drifted:
                lines.append(f"  DRIFT {c.name}: {c.score_name} {c.score:.4f}")
        if self.skipped:        # a feature the current data lacks is said here too, not only in the reports
            lines.append("  not compared: " + ", ".join(f"{k} ({v})" for k, v in sorted(self.skipped.items())))
        return "\n".join(lines)

    def write(self, out_dir: Path, stem: str = "drift") -> tuple[Path, Path]:
        """Write ``<stem>.json`` and ``<stem>.html`` atomically; return both paths."""
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise DiagnosticError([Diagnostic("MLP002", f"cannot write the drift report to {out_dir}: "
                                              "it (or a directory above it) is a file",
                                              hint="give --report-dir a new or existing directory")]) from None
        paths = (out_dir / f"{stem}.json", out_dir / f"{stem}.html")
        texts = (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", render_html(self))
        for path, text in zip(paths, texts, strict=True):
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        return paths


def _clean(value: Any) -> Any:
    """NaN/inf -> None, floats rounded to 10 significant digits (stable JSON)."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


# -- statistics ---------------------------------------------------------------------

def _shares(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    return [c / total if total else 0.0 for c in counts]


def psi(reference_counts: Sequence[float], current_counts: Sequence[float], epsilon: float = EPSILON) -> float:
    """Population stability index of two histograms over the same bins."""
    ref, cur = _shares(reference_counts), _shares(current_counts)
    total = 0.0
    for r, c in zip(ref, cur, strict=True):
        r, c = max(r, epsilon), max(c, epsilon)
        total += (c - r) * math.log(c / r)
    return total


def n_bins(n_reference: int, n_current: int) -> int:
    """Deciles, or fewer bins when a sample is small (about MIN_PER_BIN rows per bin, at least 2).

    PSI's noise grows with the number of bins over the sample size, roughly
    ``(bins - 1) * (1/n_ref + 1/n_cur)``: ten bins over 100 rows would flag noise as drift.
    """
    return max(2, min(N_BINS, min(n_reference, n_current) // MIN_PER_BIN))


def numeric_edges(reference: Sequence[float], n_bins: int = N_BINS) -> list[float]:
    """Interior bin edges: the reference's unique quantiles (deciles by default).

    A column with at most ``n_bins`` distinct values gets one bin per value instead.
    """
    import numpy as np

    values = np.asarray(reference, dtype=float)
    distinct = np.unique(values)
    if len(distinct) <= n_bins:
        return [float(v) for v in distinct[1:]]
    qs = np.quantile(values, [i / n_bins for i in range(1, n_bins)])
    return sorted({float(q) for q in qs})


def _bin_counts(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    import numpy as np

    idx = np.searchsorted(np.asarray(edges, dtype=float), np.asarray(values, dtype=float), side="right")
    return np.bincount(idx, minlength=len(edges) + 1).tolist()


def ks_statistic(reference: Sequence[float], current: Sequence[float]) -> float:
    """The two-sample Kolmogorov-Smirnov statistic D = sup |F_ref(x) - F_cur(x)|."""
    import numpy as np

    a, b = np.sort(np.asarray(reference, dtype=float)), np.sort(np.asarray(current, dtype=float))
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def _ks_pvalue(reference: Sequence[float], current: Sequence[float]) -> float | None:
    try:
        from scipy import stats
    except ImportError:
        return None
    return float(stats.ks_2samp(reference, current).pvalue)


def chi2_test(reference_counts: Sequence[float], current_counts: Sequence[float]) -> tuple[float, float | None, float]:
    """Chi-squared test of homogeneity on a 2 x k table: (statistic, p-value or None, Cramér's V)."""
    pairs = [(r, c) for r, c in zip(reference_counts, current_counts, strict=True) if r + c > 0]
    if len(pairs) < 2:
        return 0.0, 1.0, 0.0
    n_ref, n_cur = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    n = n_ref + n_cur
    if not n_ref or not n_cur:
        return 0.0, None, 0.0
    stat = 0.0
    for r, c in pairs:
        col = r + c
        for observed, row_total in ((r, n_ref), (c, n_cur)):
            expected = row_total * col / n
            stat += (observed - expected) ** 2 / expected
    dof = len(pairs) - 1
    try:
        from scipy import stats

        pvalue: float | None = float(stats.chi2.sf(stat, dof))
    except ImportError:
        pvalue = None
    return stat, pvalue, math.sqrt(stat / n)       # min(rows, cols) - 1 == 1 for two rows


# -- data -------------------------------------------------------------------------------

def read_table(path: Path, label: str) -> tuple[list[str], dict[str, list[str]]]:
    """A CSV file's header and its columns as strings."""
    if path.is_dir():
        raise DiagnosticError([Diagnostic("MLP227", f"the {label} data {path} is a directory, not a CSV file",
                                          hint="point `monitor.drift` at a CSV file with a header row")])
    if not path.is_file():
        raise DiagnosticError([Diagnostic("MLP227", f"the {label} data {path} does not exist",
                                          hint="run the pipeline that produces it, or fix `monitor.drift`")])
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                raise DiagnosticError([Diagnostic("MLP227", f"the {label} data {path} is empty (no header row)",
                                                  hint="drift monitoring reads CSV files with a header row and "
                                                       "rows of values: is the file still being written?")])
            header = [h.strip() for h in header]
            cols: dict[str, list[str]] = {h: [] for h in header}
            for row in reader:
                if not row:
                    continue
                for h, v in zip(header, row, strict=False):
                    cols[h].append(v.strip())
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DiagnosticError([Diagnostic("MLP227", f"cannot read the {label} data {path}: {exc}",
                                          hint="drift monitoring reads CSV files with a header row")])
    return header, cols


def _as_float(value: str) -> float | None:
    if value == "":
        return None
    try:
        f = float(value)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def _numeric(values: list[str]) -> list[float] | None:
    out = []
    for v in values:
        if v == "":
            continue
        f = _as_float(v)
        if f is None:
            return None
        out.append(f)
    return out


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _compare_numeric(name: str, ref: list[float], cur_raw: list[str], method: str, threshold: float,
                     missing_ref: int) -> ColumnDrift:
    cur = [f for f in (_as_float(v) for v in cur_raw) if f is not None]
    edges = numeric_edges(ref, n_bins(len(ref), len(cur)))
    rc, cc = _bin_counts(ref, edges), (_bin_counts(cur, edges) if cur else [0] * (len(edges) + 1))
    p = psi(rc, cc)
    chi, chi_p, v = chi2_test(rc, cc)
    d = ks_statistic(ref, cur) if cur else 1.0
    score_name, score = {"psi": ("psi", p), "ks": ("ks", d), "chi2": ("cramers_v", v)}[method]
    bounds = ["-inf", *map(_fmt, edges), "inf"]
    labels = [f"[{bounds[i]}, {bounds[i + 1]})" for i in range(len(bounds) - 1)]
    return ColumnDrift(
        name=name, kind="numeric", score_name=score_name, score=score, drifted=score > threshold,
        psi=p, chi2=chi, chi2_pvalue=chi_p, cramers_v=v, ks=d, ks_pvalue=_ks_pvalue(ref, cur) if cur else None,
        n_reference=len(ref), n_current=len(cur), missing_reference=missing_ref,
        missing_current=len(cur_raw) - len(cur), mean_reference=sum(ref) / len(ref),
        mean_current=sum(cur) / len(cur) if cur else None, bins=labels,
        reference_share=_shares(rc), current_share=_shares(cc))


def _compare_categorical(name: str, ref_raw: list[str], cur_raw: list[str], method: str,
                         threshold: float) -> ColumnDrift:
    ref = [v for v in ref_raw if v != ""]
    cur = [v for v in cur_raw if v != ""]
    rcount, ccount = Counter(ref), Counter(cur)
    cats = sorted(set(rcount) | set(ccount), key=lambda k: (-rcount[k], k))
    rc, cc = [rcount[k] for k in cats], [ccount[k] for k in cats]
    p = psi(rc, cc)
    chi, chi_p, v = chi2_test(rc, cc)
    score_name, score = ("psi", p) if method == "psi" else ("cramers_v", v)
    if len(cats) > MAX_CATEGORIES:     # charts keep the biggest categories
        keep = MAX_CATEGORIES - 1
        cats = [*cats[:keep], "(other)"]
        rc = [*rc[:keep], sum(rc[keep:])]
        cc = [*cc[:keep], sum(cc[keep:])]
    return ColumnDrift(
        name=name, kind="categorical", score_name=score_name, score=score, drifted=score > threshold,
        psi=p, chi2=chi, chi2_pvalue=chi_p, cramers_v=v, n_reference=len(ref), n_current=len(cur),
        missing_reference=len(ref_raw) - len(ref), missing_current=len(cur_raw) - len(cur),
        bins=cats, reference_share=_shares(rc), current_share=_shares(cc))


def compare(reference: dict[str, list[str]], current: dict[str, list[str]], *, method: str = "psi",
            threshold: float = 0.2, columns: Sequence[str] = (), reference_name: str = "reference",
            current_name: str = "current", reference_order: Sequence[str] | None = None) -> DriftReport:
    """Compare two tables given as {column: [string values]}."""
    if method not in METHODS:
        raise DiagnosticError([Diagnostic("MLP203", f"unknown drift method `{method}`",
                                          hint=did_you_mean(method, METHODS) or f"methods: {', '.join(METHODS)}")])
    order = list(reference_order or reference)
    skipped: dict[str, str] = {}
    if columns:
        missing = [c for c in columns if c not in reference or c not in current]
        if missing:
            where = [("reference" if c not in reference else "current") for c in missing]
            raise DiagnosticError([Diagnostic(
                "MLP227", f"`monitor.drift.columns` names {', '.join(f'`{c}` (not in the {w} data)' for c, w in zip(missing, where, strict=True))}",
                hint=did_you_mean(missing[0], [*reference, *current]) or f"reference columns: {', '.join(order)}")])
        names = list(columns)
    else:
        names = [c for c in order if c in current]
        skipped = {c: "not in the current data" for c in order if c not in current}
    if not names:
        raise DiagnosticError([Diagnostic("MLP227", f"{reference_name} and {current_name} have no column in common",
                                          hint="both must be CSV files with a header row naming the same features")])
    results: list[ColumnDrift] = []
    for name in names:
        ref_raw, cur_raw = reference[name], current[name]
        ref_num = _numeric(ref_raw)
        if ref_num is not None and ref_num:
            results.append(_compare_numeric(name, ref_num, cur_raw, method, threshold,
                                            missing_ref=len(ref_raw) - len(ref_num)))
        elif any(v != "" for v in ref_raw):
            results.append(_compare_categorical(name, ref_raw, cur_raw, method, threshold))
        else:
            skipped[name] = "no values in the reference data"
    ref_rows = max((len(v) for v in reference.values()), default=0)
    cur_rows = max((len(v) for v in current.values()), default=0)
    return DriftReport(reference=reference_name, current=current_name, method=method, threshold=threshold,
                       columns=results, skipped=skipped, reference_rows=ref_rows, current_rows=cur_rows,
                       created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


def compare_files(reference: Path, current: Path, *, method: str = "psi", threshold: float = 0.2,
                  columns: Sequence[str] = (), display_base: Path | None = None) -> DriftReport:
    """Compare two CSV files."""
    def shown(p: Path) -> str:
        if display_base is not None:
            try:
                return p.resolve().relative_to(display_base.resolve()).as_posix()
            except ValueError:
                pass
        return str(p)

    ref_header, ref = read_table(reference, "reference")
    _, cur = read_table(current, "current")
    if not any(cur.values()) or max(len(v) for v in cur.values()) == 0:
        raise DiagnosticError([Diagnostic("MLP227", f"the current data {current} has no rows",
                                          hint="nothing to compare yet")])
    if max((len(v) for v in ref.values()), default=0) == 0:
        raise DiagnosticError([Diagnostic("MLP227", f"the reference data {reference} has no rows")])
    report = compare(ref, cur, method=method, threshold=threshold, columns=columns,
                     reference_name=shown(reference), current_name=shown(current), reference_order=ref_header)
    from mlprism.runtime.registry import artifact_hash

    report.meta["data"] = {report.reference: artifact_hash(reference), report.current: artifact_hash(current)}
    return report


# -- HTML -------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1080px;color:#1f2328;padding:0 1.5rem}
h1{font-size:1.5rem;margin-bottom:.5rem}h2{font-size:1.15rem;margin:2rem 0 .75rem}
table{border-collapse:collapse;width:100%;font-size:.85rem;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:right;white-space:nowrap}
th{border-bottom-width:2px}
th:first-child,td:first-child,.kind{text-align:left}
tr.drift td{background:#fff1f0}td.yes{color:#a40e26;font-weight:600}
.scroll{overflow-x:auto}
.badge{display:inline-block;padding:.15rem .6rem;border-radius:1rem;font-weight:600;font-size:.85rem;vertical-align:middle}
.bad{background:#ffd8d3;color:#a40e26}.good{background:#d2f4d3;color:#116329}
.meta{color:#59636e;font-size:.9rem}.nowrap{white-space:nowrap}ul.meta{margin:.25rem 0;padding-left:1.2rem}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:1.25rem 2rem}
figure{margin:0}figcaption{font-size:.95rem;margin-bottom:.25rem}
svg{width:100%;height:auto;display:block}
.legend{margin:-.25rem 0 .75rem}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .35rem 0 1rem;vertical-align:-.1rem;border-radius:2px}
.legend span:first-child{margin-left:0}
"""
_REFERENCE_COLOR = "#8c959f"
_DRIFT_COLOR = "#cf222e"
_CURRENT_COLOR = "#0969da"


def _bin_label(label: str) -> str:
    """``[-inf, 11.46)`` -> ``< 11.46``, ``[11.46, 12.72)`` -> ``11.46\u201312.72`` (an en dash), ``[17.04, inf)`` -> ``≥ 17.04``."""
    if label.startswith("[") and label.endswith(")") and ", " in label:
        lo, hi = label[1:-1].split(", ", 1)
        if lo == "-inf":
            return f"< {hi}"
        if hi == "inf":
            return f"≥ {lo}"
        return f"{lo}\u2013{hi}"
    return label


def _y_step(peak: float) -> float:
    """A round grid step (a share) giving at most five gridlines up to ``peak``."""
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25):
        if peak / step <= 5:
            return step
    return 0.25


def _svg_chart(col: ColumnDrift) -> str:
    """Grouped bars: reference vs current share per bin (inline SVG)."""
    labels = [_bin_label(b) for b in col.bins]
    n = max(len(labels), 1)
    width, left, right, top = 480, 40, 6, 8
    group_w = (width - left - right) / n
    longest = max((len(s) for s in labels), default=1)
    rotate = longest * 6.6 > group_w - 4          # horizontal labels only when they fit
    bottom = 20 + (min(longest, 18) * 4.4 if rotate else 0)
    height = round(150 + top + bottom)
    plot_h = height - bottom - top
    step = _y_step(max([*col.reference_share, *col.current_share, 1e-9]))
    ticks = max(1, math.ceil(max([*col.reference_share, *col.current_share, 1e-9]) / step - 1e-9))
    top_share = step * ticks
    bar = max(min(group_w * 0.36, 36), 1)
    current_color = _DRIFT_COLOR if col.drifted else _CURRENT_COLOR
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'width="{width}" height="{height}" font-family="system-ui,sans-serif" '
             f'aria-label="distribution of {html.escape(col.name)}: reference vs current">']
    for k in range(ticks + 1):
        y = top + plot_h * (1 - k / ticks)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{"#8c959f" if k == 0 else "#eaeef2"}"/>')
        parts.append(f'<text x="{left - 5}" y="{y + 3.5:.1f}" font-size="10" text-anchor="end" fill="#59636e">'
                     f'{step * k:.0%}</text>')
    for i, label in enumerate(labels):
        x0 = left + i * group_w + group_w / 2
        for j, (share, color, who) in enumerate(((col.reference_share[i], _REFERENCE_COLOR, "reference"),
                                                 (col.current_share[i], current_color, "current"))):
            h = plot_h * share / top_share
            x = x0 - bar + j * bar
            parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" '
                         f'fill="{color}"><title>{html.escape(col.bins[i])} {who}: {share:.1%}</title></rect>')
        short = html.escape(label if len(label) <= 18 else label[:17] + "…")
        y = top + plot_h + 13
        if rotate:
            parts.append(f'<text x="{x0 + 3:.1f}" y="{y}" font-size="10.5" fill="#59636e" text-anchor="end" '
                         f'transform="rotate(-35 {x0 + 3:.1f} {y})">{short}</text>')
        else:
            parts.append(f'<text x="{x0:.1f}" y="{y}" font-size="10.5" fill="#59636e" text-anchor="middle">{short}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _num(x: float | None, fmt: str = ".4f") -> str:
    return "-" if x is None or not math.isfinite(x) else format(x, fmt)


def render_html(report: DriftReport) -> str:
    """A small self-contained HTML page: summary, a chart per drifted column, a table of every column."""
    esc = html.escape
    verdict = (f'<span class="badge bad">drift in {len(report.drifted_columns)} of {len(report.columns)} columns</span>'
               if report.drifted else f'<span class="badge good">no drift in {len(report.columns)} columns</span>')
    ranked = sorted(report.columns, key=lambda c: (not c.drifted, -c.score, c.name))
    rows = []
    for c in ranked:
        rows.append(
            f'<tr class="{"drift" if c.drifted else ""}"><td>{esc(c.name)}</td><td class="kind">{c.kind}</td>'
            f"<td><b>{_num(c.score)}</b> {c.score_name}</td><td>{_num(c.psi)}</td><td>{_num(c.ks)}</td>"
            f"<td>{_num(c.ks_pvalue, '.3g')}</td><td>{_num(c.cramers_v)}</td><td>{_num(c.chi2_pvalue, '.3g')}</td>"
            f"<td>{_num(c.mean_reference, '.4g')} → {_num(c.mean_current, '.4g')}</td>"
            f'<td class="{"yes" if c.drifted else ""}">{"yes" if c.drifted else "no"}</td></tr>')
    charts = []
    for c in ranked:
        if c.drifted:
            mean = (f" · mean {_num(c.mean_reference, '.4g')} → {_num(c.mean_current, '.4g')}"
                    if c.mean_reference is not None else "")
            charts.append(f'<figure><figcaption><b>{esc(c.name)}</b> <span class="meta">{c.score_name} '
                          f"{_num(c.score)} &gt; {report.threshold:g}{mean}</span></figcaption>"
                          f"{_svg_chart(c)}</figure>")
    legend = (f'<div class="legend meta"><span style="background:{_REFERENCE_COLOR}"></span>reference '
              f"<code>{esc(report.reference)}</code>"
              f'<span style="background:{_DRIFT_COLOR}"></span>current <code>{esc(report.current)}</code>'
              " · bars: share of rows in each bin (bins: the reference's quantiles)</div>")
    skipped = "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in sorted(report.skipped.items()))
    data = report.meta.get("data") or {}
    hashes = "".join(f"<li><code>{esc(k)}</code> blake3 <code>{esc(str(v))[:16]}…</code></li>"
                     for k, v in data.items())
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Drift report: {esc(report.current)}</title><style>{_CSS}</style></head><body>"
        f"<h1>Drift report {verdict}</h1>"
        f'<p class="meta">Reference <code>{esc(report.reference)}</code> ({report.reference_rows} rows) vs current '
        f"<code>{esc(report.current)}</code> ({report.current_rows} rows) · method <b>{esc(report.method)}</b>, "
        f"a column drifts when its score is above <b>{report.threshold:g}</b> · "
        f'<span class="nowrap">{esc(report.created_at)}</span></p>'
        + (f'<ul class="meta">{hashes}</ul>' if hashes else "")
        + (f"<h2>Drifted columns</h2>{legend}<div class=\"charts\">{''.join(charts)}</div>" if charts else "")
        + "<h2>All columns</h2>"
        '<div class="scroll"><table><thead><tr><th>column</th><th class="kind">type</th><th>score</th><th>PSI</th>'
        "<th>KS D</th><th>KS p</th><th>Cramér's V</th><th>χ² p</th><th>mean ref → cur</th><th>drift</th></tr>"
        "</thead><tbody>" + "".join(rows) + "</tbody></table></div>"
        + (f"<h2>Not compared</h2><ul>{skipped}</ul>" if skipped else "")
        + "</body></html>\n")


# -- monitoring a pipeline ------------------------------------------------------------------

@dataclass
class MonitorResult:
    report: DriftReport
    json_path: Path
    html_path: Path
    report_id: int | None = None
    retrain: dict[str, Any] | None = None      # the retrain run (run_id, status, registered, …) if one ran


def check_drift(pipeline: Any, project_dir: Path, *, report_dir: Path | None = None) -> MonitorResult:
    """Check ``pipeline.monitor.drift``, write the reports and record them in the ledger.

    Without ``report_dir`` the reports go to ``.mlprism/reports/drift/`` as
    ``drift-<UTC time>.{json,html}`` plus ``latest.{json,html}``.
    """
    monitor = pipeline.monitor
    if monitor is None:
        raise DiagnosticError([Diagnostic("MLP227", "the spec has no `monitor` section")])
    cfg = monitor.drift
    project_dir = Path(project_dir)
    try:
        report = compare_files(project_dir / cfg.reference, project_dir / cfg.current, method=cfg.method,
                               threshold=cfg.threshold, columns=cfg.columns, display_base=project_dir)
    except DiagnosticError as exc:
        # point at the spec key (or the override) that names the file: `monitor.drift.current`, ...
        raise DiagnosticError([d if d.location is not None else dataclasses.replace(d, location=pipeline.location(
            "monitor.drift.current" if "current data" in d.message else
            "monitor.drift.reference" if "reference data" in d.message else
            "monitor.drift.columns" if "monitor.drift.columns" in d.message else "monitor.drift"))
            for d in exc.diagnostics]) from None
    report.meta["pipeline"] = pipeline.name
    report.meta["on_drift"] = monitor.on_drift
    state = project_dir / ".mlprism"
    if report_dir is not None:
        json_path, html_path = report.write(Path(report_dir), "drift")
    else:
        out = state / "reports" / "drift"
        stamp = report.created_at.replace("-", "").replace(":", "")
        report.write(out, f"drift-{stamp}")
        json_path, html_path = report.write(out, "latest")
    payload = {**report.to_dict(), "report_json": str(json_path), "report_html": str(html_path)}
    from mlprism.runtime.ledger import Ledger

    with Ledger(state / "ledger.db") as ledger:
        report_id = ledger.add_report("drift", payload)
    return MonitorResult(report, json_path, html_path, report_id)


def should_retrain(pipeline: Any, result: MonitorResult) -> bool:
    return bool(result.report.drifted and pipeline.monitor and pipeline.monitor.on_drift == "retrain")


def monitor_once(pipeline: Any, project_dir: Path, *, report_dir: Path | None = None, retrain: bool = True,
                 run_options: Any = None) -> MonitorResult:
    """:func:`check_drift`, then (on drift with ``on_drift: retrain`` and ``retrain``) :func:`retrain`."""
    result = check_drift(pipeline, project_dir, report_dir=report_dir)
    if retrain and should_retrain(pipeline, result):
        result.retrain = run_retrain(pipeline, project_dir, result.report_id, run_options)
    return result


def run_retrain(pipeline: Any, project_dir: Path, report_id: int | None = None,
                run_options: Any = None) -> dict[str, Any]:
    """Run the whole pipeline again: changed data reruns its steps, the gates decide, the registry records."""
    from mlprism.runtime.executor import RunOptions, run_pipeline
    from mlprism.runtime.ledger import Ledger

    result = run_pipeline(project_dir, pipeline, run_options or RunOptions())
    registered = result.registered
    version = getattr(registered, "version", registered)
    info: dict[str, Any] = {"run_id": result.run_id, "status": result.status, "registered": version,
                            "drift_report": report_id, "steps": {n: r.status for n, r in result.steps.items()}}
    failed = [r for r in result.steps.values() if r.status == "failed"]
    if failed:
        info["message"] = f"`{failed[0].name}` failed [{failed[0].code}]: {failed[0].error}"
    elif result.status == "succeeded" and all(r.status != "succeeded" for r in result.steps.values()):
        info["message"] = "everything was up to date: no new data to retrain on"
    elif version is not None:
        info["message"] = f"registered version {version}; promote it with `mlprism models promote`"
    with Ledger(project_dir / ".mlprism" / "ledger.db") as ledger:
        ledger.add_report("retrain", info, run_id=result.run_id)
    from mlprism.runtime.tracking import sync_if_configured

    try:
        sync_if_configured(project_dir, pipeline)
    except DiagnosticError as exc:       # the retrain happened; a mirror failure is reported, not fatal
        info["tracking"] = exc.diagnostics[0].message
    return info
