"""The drift report people read: one self-contained HTML page (charts inline, no network).

In the order a reader needs it: a summary per monitor (what drifted, how much, since when), the
threshold rule where it is applied, charts (reference vs current distributions of the drifted
features; PSI across stores; the most drifted stores' recent sales against their reference
window), then every metric row in a table that sorts by any column and filters as you type.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlcore.config.models import DriftConfig
from mlcore.figures import png_data_uri

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from mlcore.drift.compare import Distribution

KEY = ["monitor", "feature", "group_key", "metric"]
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}"
    "h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;"
    "text-align:left}th{background:#f4f4f4}#rows th{cursor:pointer}td.num{text-align:right}"
    "tr.drift td.flag{color:#b00;font-weight:600}.note{color:#555;font-size:13px}"
    ".charts img{max-width:100%}.ok{color:#070}.bad{color:#b00}"
)
SCRIPT = """
const table = document.getElementById('rows');
const body = table.tBodies[0];
let order = {column: -1, up: true};
table.tHead.addEventListener('click', e => {
  const column = e.target.cellIndex;
  order = {column, up: order.column === column ? !order.up : false};
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = a.cells[column].dataset.v ?? a.cells[column].textContent;
    const y = b.cells[column].dataset.v ?? b.cells[column].textContent;
    const nx = parseFloat(x), ny = parseFloat(y);
    const cmp = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
    return order.up ? cmp : -cmp;
  });
  rows.forEach(r => body.appendChild(r));
});
function filterRows() {
  const text = document.getElementById('filter').value.toLowerCase();
  const driftedOnly = document.getElementById('drifted').checked;
  let shown = 0;
  for (const row of body.rows) {
    const keep = row.textContent.toLowerCase().includes(text) && (!driftedOnly || row.classList.contains('drift'));
    row.style.display = keep ? '' : 'none';
    shown += keep ? 1 : 0;
  }
  document.getElementById('shown').textContent = shown;
}
document.getElementById('filter').addEventListener('input', filterRows);
document.getElementById('drifted').addEventListener('change', filterRows);
"""



def drifted_since(frame: pd.DataFrame, history: pd.DataFrame | None) -> dict[tuple, tuple[Any, int]]:
    """For each metric drifted now: the first run date of its unbroken run of drifted flags
    (this run included) and how many runs that is. ``history``: earlier runs' rows (KEY columns,
    ``run_date``, ``drifted``)."""
    now = frame[frame["drifted"]]
    out: dict[tuple, tuple[Any, int]] = {tuple(k): (None, 1) for k in now[KEY].itertuples(index=False)}
    if history is None or history.empty or not out:
        return out
    dates = sorted(history["run_date"].unique(), reverse=True)
    flagged = {
        (tuple(k), d)
        for *k, d in history[history["drifted"]][[*KEY, "run_date"]].itertuples(index=False)
    }
    for key in out:
        start, runs = None, 1
        for day in dates:
            if (key, day) not in flagged:
                break
            start, runs = day, runs + 1
        out[key] = (start, runs)
    return out


def _monitor_summary(
    frame: pd.DataFrame, since: dict[tuple, tuple[Any, int]], run_date: dt.date
) -> list[dict[str, str]]:
    rows = []
    for monitor, part in frame.groupby("monitor", sort=True):
        drifted = part[part["drifted"]]
        grouped = part["group_key"].notna()
        groups = part.loc[grouped, "group_key"].nunique()
        drifted_groups = drifted.loc[drifted["group_key"].notna(), "group_key"].nunique()
        features = sorted(drifted["feature"].unique())
        psis = part.loc[part["metric"] == "psi", "value"]
        streaks = [since.get(tuple(k), (None, 1)) for k in drifted[KEY].itertuples(index=False)]
        started = [s for s, _ in streaks if s is not None]
        if drifted.empty:
            since_text = ""
        elif started:
            longest = max(n for _, n in streaks)
            since_text = f"{min(started)} ({longest} runs in a row at most)"
        else:
            since_text = f"{run_date} (new this run)"
        first = part.iloc[0]
        rows.append({
            "monitor": str(monitor),
            "compares": f"{first['reference_window']} vs {first['current_window']}",
            "drifted": f"{len(drifted)} of {len(part)} metrics",
            "where": (
                f"{drifted_groups} of {groups} groups" if groups
                else (", ".join(features) if features else "nothing")
            ),
            "max PSI": f"{psis.max():.3f}" if len(psis) else "",
            "drifted since": since_text,
        })  # fmt: skip
    return rows


def _distribution_chart(distributions: Sequence[Distribution]) -> Figure:
    from matplotlib.figure import Figure

    columns = min(3, len(distributions))
    rows = math.ceil(len(distributions) / columns)
    fig = Figure(figsize=(4.2 * columns, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, shape in zip(axes, distributions, strict=False):
        positions = range(len(shape.labels))
        ax.bar([p - 0.2 for p in positions], shape.reference, width=0.4, label="reference", color="#9bb7d4")
        ax.bar([p + 0.2 for p in positions], shape.current, width=0.4, label="current", color="#c44e52")
        ax.set_xticks(list(positions), shape.labels, rotation=45 if len(shape.labels) > 6 else 0, fontsize=7)
        ax.set_title(f"{shape.monitor}: {shape.feature} (PSI {shape.psi:.2f})", fontsize=9, loc="left")
        ax.set_ylabel("share of rows", fontsize=8)
        ax.legend(fontsize=7, frameon=False)
    for ax in axes[len(distributions):]:
        ax.set_visible(False)
    return fig


def _psi_histogram(values: pd.Series, threshold: float) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 2.8), layout="constrained")
    ax = fig.subplots()
    ax.hist(values.clip(upper=values.quantile(0.99)), bins=40, color="#4c72b0")
    ax.axvline(threshold, color="#c44e52", linestyle="--", linewidth=1, label=f"configured threshold {threshold}")
    ax.set_xlabel("PSI of sales per store (current window vs reference window)")
    ax.set_ylabel("stores")
    ax.legend(frameon=False)
    return fig


def _store_series_chart(series: pd.DataFrame, order: list[str]) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 2.4 * len(order)), layout="constrained")
    axes = fig.subplots(len(order), 1, squeeze=False)[:, 0]
    for ax, group in zip(axes, order, strict=True):
        part = series[series["group_key"] == group].sort_values("ds")
        for window, color in (("reference", "#9bb7d4"), ("current", "#c44e52")):
            rows = part[part["window"] == window]
            ax.plot(rows["ds"], rows["y"], ".-", color=color, label=f"{window} window", linewidth=1)
            if len(rows):
                ax.axhline(rows["y"].mean(), color=color, linestyle="--", linewidth=0.8)
        ax.set_title(f"store {group}: daily sales, dashed = window mean", fontsize=9, loc="left")
        ax.set_ylabel("sales")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return fig


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return f"<td class='flag'>{'drifted' if value else ''}</td>"
    if isinstance(value, float):
        shown = "" if math.isnan(value) else f"{value:.4f}"
        return f"<td class='num' data-v='{value!r}'>{shown}</td>"
    if isinstance(value, int):
        return f"<td class='num' data-v='{value}'>{value:,}</td>"
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def report_html(
    frame: pd.DataFrame,
    skipped: dict[str, str],
    cfg: DriftConfig,
    run_date: dt.date,
    distributions: Sequence[Distribution] = (),
    history: pd.DataFrame | None = None,
    store_series: pd.DataFrame | None = None,
) -> str:
    """The report page from this run's metric rows (``frame``: the drift_metrics columns),
    the monitors skipped and why, the ungrouped features' distributions, earlier runs' flags
    (``history``) and daily sales of the most drifted stores (``store_series``: group_key, ds,
    y, window in reference/current)."""
    since = drifted_since(frame, history)
    total = len(frame)
    drifted_total = int(frame["drifted"].sum()) if total else 0
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Drift report {run_date}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Drift report, run date {run_date}</h1>",
        f"<p>{drifted_total:,} of {total:,} metrics drifted"
        + (f"; {len(skipped)} monitor(s) skipped" if skipped else "") + ".</p>",
        "<h2>Summary per monitor</h2>",
    ]
    summary = _monitor_summary(frame, since, run_date) if total else []
    for monitor, reason in skipped.items():
        summary.append({"monitor": monitor, "compares": "", "drifted": "skipped", "where": reason,
                        "max PSI": "", "drifted since": ""})  # fmt: skip
    if summary:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in summary[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row.values()) + "</tr>"
            for row in summary
        )
        parts.append(f"<table><tr>{head}</tr>{body}</table>")
    parts.append(
        "<p class='note'><b>How a metric is flagged.</b> PSI (population stability index) over "
        f"{cfg.psi_bins} reference-quantile bins is flagged above its threshold; KS (largest gap "
        "between the cumulative shares) likewise; chi-square for categories below its p-value. "
        f"The configured thresholds are PSI {cfg.psi_threshold}, KS {cfg.ks_threshold}, "
        f"chi-square p {cfg.chi2_pvalue} and realised WAPE {cfg.forecast_wape_threshold}. Where "
        "few rows are compared (a single store's weeks), sampling noise alone moves PSI and KS "
        "more than that, so the threshold applied is the larger of the configured one and the "
        "noise floor at the two sample sizes (PSI's expected value under no change; KS's critical "
        f"value at p {cfg.chi2_pvalue}): each row's <i>threshold</i> column is the one applied. "
        f"Groups with fewer than {cfg.min_rows} rows on either side are not compared.</p>"
    )

    charts: list[str] = []
    drawn = sorted(distributions, key=lambda d: (not d.drifted, -d.psi))[:9]
    if drawn:
        charts.append("<h3>Reference vs current distributions (drifted features first)</h3>")
        charts.append(f"<img alt='distributions' src='{png_data_uri(_distribution_chart(drawn))}'>")
    per_store = frame[
        (frame["metric"] == "psi") & frame["group_key"].notna() & (frame["monitor"] == "sales_per_store")
    ] if total else frame  # fmt: skip
    if len(per_store):
        charts.append("<h3>PSI across stores</h3>")
        charts.append(f"<img alt='PSI per store' src='{png_data_uri(_psi_histogram(per_store['value'], cfg.psi_threshold))}'>")
    if store_series is not None and len(store_series):
        order = list(dict.fromkeys(store_series["group_key"]))
        charts.append("<h3>The most drifted stores' recent sales</h3>")
        charts.append(f"<img alt='drifted stores' src='{png_data_uri(_store_series_chart(store_series, order))}'>")
    if charts:
        parts.append("<h2>Charts</h2><div class='charts'>" + "".join(charts) + "</div>")

    columns = [
        "monitor", "feature", "group_key", "metric", "value", "threshold", "drifted",
        "drifted_since", "n_reference", "n_current", "reference_window", "current_window",
    ]  # fmt: skip
    parts.append("<h2>All metric rows</h2>")
    parts.append(
        "<p><input id='filter' placeholder='filter: store, feature, monitor...' size='40'> "
        "<label><input type='checkbox' id='drifted'> drifted only</label> "
        f"<span class='note'><span id='shown'>{total}</span> of {total} rows shown; "
        "click a column to sort</span></p>"
    )
    parts.append("<table id='rows'><thead><tr>")
    parts.extend(f"<th>{c}</th>" for c in columns)
    parts.append("</tr></thead><tbody>")
    if total:
        ordered = frame.sort_values(["drifted", "monitor", "value"], ascending=[False, True, False])
        for record in ordered.to_dict("records"):
            start, runs = since.get(tuple(record[k] for k in KEY), (None, 0))
            record["drifted_since"] = (
                f"{start} ({runs} runs)" if start is not None else (str(run_date) if record["drifted"] else "")
            )
            record["group_key"] = record["group_key"] if isinstance(record["group_key"], str) else None
            cells = "".join(_cell(_plain(record[c])) for c in columns)
            parts.append(f"<tr class='{'drift' if record['drifted'] else ''}'>{cells}</tr>")
    parts.append("</tbody></table>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "".join(parts)


def _plain(value: Any) -> Any:
    """numpy scalars as Python values (bool before int: numpy bools are not ints)."""
    if hasattr(value, "item"):
        value = value.item()
    return value


def history_columns() -> list[str]:
    """The drift_metrics columns :func:`drifted_since` reads from earlier runs."""
    return [*KEY, "run_date", "drifted"]

