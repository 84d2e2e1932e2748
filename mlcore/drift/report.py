"""The drift report people read: an HTML page of the metric rows, drifted first."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from mlcore.config.models import DriftConfig


def report_html(
    frame: Any, skipped: dict[str, str], cfg: DriftConfig, run_date: dt.date
) -> str:
    """A readable report: per-monitor counts, skipped monitors, then the metric rows, drifted first."""
    parts = [
        f"<html><head><meta charset='utf-8'><title>Drift report {run_date}</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:2px 6px}tr.drift{background:#fdd}</style></head><body>",
        f"<h1>Drift report — run date {run_date}</h1>",
        f"<p>Thresholds: PSI &gt; {cfg.psi_threshold}, KS &gt; {cfg.ks_threshold}, chi-square p &lt; "
        f"{cfg.chi2_pvalue}, realised WAPE &gt; {cfg.forecast_wape_threshold}.</p><h2>Monitors</h2><ul>",
    ]
    if len(frame):
        for monitor, part in frame.groupby("monitor"):
            parts.append(
                f"<li><b>{html.escape(monitor)}</b>: {int(part['drifted'].sum())} of {len(part)} metrics drifted</li>"
            )
    for monitor, reason in skipped.items():
        parts.append(f"<li><b>{html.escape(monitor)}</b>: skipped — {html.escape(reason)}</li>")
    parts.append("</ul><h2>Metrics</h2><table><tr>")
    columns = [
        "monitor",
        "feature",
        "group_key",
        "metric",
        "value",
        "threshold",
        "drifted",
        "n_reference",
        "n_current",
        "reference_window",
        "current_window",
    ]
    parts.extend(f"<th>{c}</th>" for c in columns)
    parts.append("</tr>")
    shown = (
        frame.sort_values(["drifted", "monitor", "value"], ascending=[False, True, False]).head(
            cfg.report_rows
        )
        if len(frame)
        else frame
    )
    for _, row in shown.iterrows():
        cells = "".join(
            f"<td>{html.escape(f'{row[c]:.4f}' if isinstance(row[c], float) else str(row[c]))}</td>"
            for c in columns
        )
        parts.append(f"<tr class='{'drift' if row['drifted'] else ''}'>{cells}</tr>")
    parts.append(
        f"</table><p>{len(frame)} metric rows; first {min(len(frame), cfg.report_rows)} shown.</p></body></html>"
    )
    return "".join(parts)
