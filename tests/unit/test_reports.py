"""The forecast and drift reports: what they say, from frames shaped like the jobs' own, and that
they render in a real browser (headless Chromium screenshots: not blank, every chart drawn)."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcore.config.models import DriftConfig
from mlcore.drift.compare import Distribution
from mlcore.drift.report import drifted_since, report_html
from mlcore.forecasting.plots import backtest_plot, group_label
from mlcore.forecasting.report import forecast_report_html

RUN_DATE = dt.date(2015, 6, 14)


def forecast_frames(stores: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``groups`` and ``points`` as train_forecasts collects them: store s has WAPE ~ s / 100."""
    rng = np.random.default_rng(0)
    groups, points = [], []
    for store in range(1, stores + 1):
        champion = "prophet" if store % 3 else "seasonal_naive"
        groups.append({
            "store": store, "status": "ok", "champion": champion, "action": "trained",
            "champion_wape": store / 100, "champion_rmspe": store / 80,
            "status_reason": "prophet WAPE 0.1 vs seasonal naive 0.2",
        })  # fmt: skip
        for model in ("prophet", "seasonal_naive"):
            for day in range(14):
                y = 5000 + 300 * np.sin(day)
                points.append({
                    "store": store, "champion": champion, "model": model, "backtest_window": 0,
                    "ds": pd.Timestamp("2015-06-01") + pd.Timedelta(days=day), "y": y,
                    "yhat": y * (1 + rng.normal(0, store / 100)), "yhat_lower": y * 0.8, "yhat_upper": y * 1.2,
                })  # fmt: skip
    groups.append({
        "store": 99, "status": "skipped", "champion": None, "action": "trained", "champion_wape": np.nan,
        "champion_rmspe": np.nan, "status_reason": "insufficient history: 3 open days < 60",
    })  # fmt: skip
    return pd.DataFrame(groups), pd.DataFrame(points)


def drift_frame() -> pd.DataFrame:
    rows = []
    for store in range(1, 31):
        value = 0.05 + store / 30
        rows.append({
            "monitor": "sales_per_store", "source_table": "sales", "feature": "sales",
            "group_key": str(store), "metric": "psi", "value": value, "threshold": 0.9,
            "drifted": value > 0.9, "n_reference": 24, "n_current": 24,
            "reference_window": "2015-06-04 .. 2015-07-01", "current_window": "2015-07-02 .. 2015-07-31",
        })  # fmt: skip
    rows.append({
        "monitor": "bank_features", "source_table": "bank", "feature": "<b>age</b>", "group_key": None,
        "metric": "psi", "value": 0.31, "threshold": 0.2, "drifted": True, "n_reference": 800,
        "n_current": 800, "reference_window": "bank@v0", "current_window": "bank@v1",
    })  # fmt: skip
    return pd.DataFrame(rows)


def test_forecast_report_says_accuracy_mix_failures_and_shows_examples():
    groups, points = forecast_frames()
    page = forecast_report_html(
        groups, points, ["store"], {"pooled_wape_champion": 0.1123, "pooled_wape_prophet": 0.12},
        RUN_DATE, "store_forecaster",
    )  # fmt: skip
    assert "Forecast report: store_forecaster, run date 2015-06-14" in page
    assert "pooled WAPE (champions)<b>0.1123</b>" in page
    worst = re.findall(r"<tr><td>(\d+)</td><td>(?:prophet|seasonal_naive)</td><td class='num'>", page)
    assert worst[:3] == ["20", "19", "18"], "worst stores first"
    assert "insufficient history" in page and "<td>skipped</td>" in page
    assert "store 1 (best)" in page and "store 20 (worst)" in page
    assert page.count("data:image/png;base64,") == 2, "histogram and example forecasts, inline"


def test_backtest_plot_names_the_store_and_keeps_the_legend_off_the_data(tmp_path):
    groups, points = forecast_frames(3)
    assert group_label(["store", "item"], (3, 7)) == "store 3, item 7"
    path = backtest_plot(groups, points, ["store"], plot_groups=2)
    assert path is not None and Path(path).stat().st_size > 10_000


def test_drifted_since_follows_the_unbroken_streak():
    frame = drift_frame()
    key = ("sales_per_store", "sales", "30", "psi")
    history = pd.DataFrame([
        {"monitor": key[0], "feature": key[1], "group_key": key[2], "metric": key[3], "run_date": day, "drifted": flag}
        for day, flag in ((dt.date(2015, 7, 25), True), (dt.date(2015, 7, 18), True), (dt.date(2015, 7, 11), False),
                          (dt.date(2015, 7, 4), True))
    ])  # fmt: skip
    since = drifted_since(frame, history)
    assert since[key] == (dt.date(2015, 7, 18), 3), "this run and the two before it"
    assert since[("bank_features", "<b>age</b>", None, "psi")] == (None, 1), "new this run"


def test_drift_report_summarises_explains_and_escapes():
    frame = drift_frame()
    distribution = Distribution("bank_features", "age", ["q1", "q2"], [0.5, 0.5], [0.2, 0.8], 0.31, True)
    series = pd.DataFrame({
        "group_key": ["30"] * 4, "ds": pd.date_range("2015-07-01", periods=4), "y": [5.0, 6.0, 9.0, 9.5],
        "window": ["reference", "reference", "current", "current"],
    })  # fmt: skip
    page = report_html(frame, {"ride_features": "no champion"}, DriftConfig(), RUN_DATE, [distribution],
                       None, series)  # fmt: skip
    summary = page[page.index("Summary per monitor") : page.index("How a metric is flagged")]
    assert "sales_per_store" in summary and "5 of 30 groups" in summary
    assert "ride_features" in summary and "no champion" in summary
    assert "the larger of the configured one and the noise floor" in page
    assert page.count("data:image/png;base64,") == 3, "distributions, PSI across stores, store sales"
    assert "<b>age</b>" not in page and "&lt;b&gt;age&lt;/b&gt;" in page
    assert page.count("<tr class='drift'>") == 6 and "id='filter'" in page


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium for the report rendering check (.ci/run installs it)")
        pytest.skip("no Chromium here (.ci/run installs it from Debian)")
    return found


@pytest.mark.parametrize("report", ["forecast", "drift"])
def test_reports_render_in_headless_chromium(report, tmp_path):
    import matplotlib.image

    chromium = _chromium()
    if report == "forecast":
        groups, points = forecast_frames()
        page = forecast_report_html(groups, points, ["store"], {"pooled_wape_champion": 0.11}, RUN_DATE, "m")
    else:
        page = report_html(drift_frame(), {}, DriftConfig(), RUN_DATE)
    source = tmp_path / f"{report}.html"
    source.write_text(page, encoding="utf-8")
    shot = tmp_path / f"{report}.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,1600"]
    done = subprocess.run([chromium, *flags, f"--screenshot={shot}", source.as_uri()],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shot.exists(), done.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1600, 1200)
    assert pixels.std() > 0.05, "the page rendered (not a blank screenshot)"
    dom = subprocess.run([chromium, *flags, "--dump-dom", source.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    assert dom.count("<img") == page.count("<img") and "</table>" in dom
