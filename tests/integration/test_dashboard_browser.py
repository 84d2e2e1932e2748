"""The planners' dashboard in headless Chromium (Debian's chromium + chromium-driver, Selenium):
the page loads, a store is picked, the chart and the similar stores appear, an overlay is
switched, the run date is changed, the CSV of what is shown downloads, and the browser console
stays free of errors. Served by uvicorn on loopback, over the real lake of the service tests."""

from __future__ import annotations

import csv
import io
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.integration.service_lake import RUN_DATES

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(service_lake):
    """The service on a loopback port in a thread (a real uvicorn, as `mlcore serve` runs it)."""
    from tests.integration.test_forecast_service import service

    yield from _serve(service(service_lake))


@pytest.fixture
def served_items(item_lake):
    """The same over the store x item lake."""
    from tests.integration.test_store_items import item_service

    yield from _serve(item_service(item_lake))


def _serve(app):
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("uvicorn did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("headless Chromium needs Debian's chromium and chromium-driver (.ci/run installs them)")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads  # type: ignore[attr-defined]
    yield driver
    driver.quit()


def _wait(predicate, what: str, seconds: float = 20.0):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (NoSuchElementException, StaleElementReferenceException):  # not drawn yet
            value = None
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_dashboard_end_to_end_in_headless_chromium(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    find = browser.find_element
    browser.get(served + "/")
    _wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#store-list option")) == 8, "the store list")
    runs = Select(find(By.ID, "run-select"))
    assert [o.text for o in runs.options][0] == f"{RUN_DATES[-1]} (latest)"

    find(By.ID, "store-input").send_keys("3")
    find(By.ID, "load-button").click()
    _wait(lambda: find(By.ID, "forecast-line").get_attribute("d"), "the forecast line")
    assert find(By.ID, "actual-line").get_attribute("d").count("L") > 40  # 8 weeks of actuals
    assert find(By.ID, "forecast-band").get_attribute("d").endswith("Z")
    assert len(browser.find_elements(By.CSS_SELECTOR, "circle.closed-day")) >= 6
    title = find(By.ID, "chart-title").text
    assert title == f"Store 3: forecast run {RUN_DATES[-1]}"
    similar_rows = browser.find_elements(By.CSS_SELECTOR, "#similar-table tbody tr")
    assert len(similar_rows) == 5
    _wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, "path.overlay-line")) == 3, "3 overlays")

    boxes = browser.find_elements(By.CSS_SELECTOR, "#similar-table input[type=checkbox]")
    assert [b.is_selected() for b in boxes] == [True, True, True, False, False]
    boxes[4].click()  # overlay a fourth similar store
    _wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, "path.overlay-line")) == 4, "4 overlays")
    fourth = similar_rows[4].get_attribute("data-store")
    assert f"store {fourth}" in find(By.ID, "legend").text

    runs.select_by_value(RUN_DATES[0].isoformat())
    _wait(lambda: find(By.ID, "chart-title").text == f"Store 3: forecast run {RUN_DATES[0]}", "the older run")
    _wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, "path.overlay-line")) == 3, "overlays of the older run")

    find(By.ID, "download-csv").click()
    expected = browser.downloads / f"store_3_forecast_{RUN_DATES[0]}.csv"
    _wait(lambda: expected.exists() and expected.stat().st_size > 0, "the CSV download")
    rows = list(csv.DictReader(io.StringIO(expected.read_text())))
    series = {}
    for row in rows:
        series.setdefault((row["store"], row["series"]), []).append(row)
    assert len(series[("3", "actual")]) == 56 and len(series[("3", "forecast")]) == 48
    overlays = [key for key in series if key[1] == "similar store forecast"]
    assert len(overlays) == 3 and all(len(series[key]) == 48 for key in overlays)
    assert {row["run_date"] for row in series[("3", "forecast")]} == {RUN_DATES[0].isoformat()}
    closed = [row for row in series[("3", "forecast")] if row["open"] == "false"]
    assert closed and all(float(row["value"]) == 0 for row in closed)

    find(By.ID, "store-input").clear()
    find(By.ID, "store-input").send_keys("4242")
    find(By.ID, "load-button").click()
    _wait(lambda: "4242" in find(By.ID, "status").text, "the error for an unknown store")
    assert find(By.ID, "status").get_attribute("class") == "error"

    errors = [
        entry for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "4242" not in entry["message"]  # the expected 404 above
    ]  # fmt: skip
    assert errors == [], errors


def test_dashboard_picks_an_item_in_a_store_x_item_lake(served_items, browser, item_lake):
    from deltalake import DeltaTable
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    forecasts = DeltaTable(str(item_lake / "lake" / "forecasts")).to_pandas()
    store = int(forecasts["store"].min())
    items = sorted(int(i) for i in forecasts.loc[forecasts["store"] == store, "item"].unique())
    find = browser.find_element
    browser.get(served_items + "/")
    _wait(lambda: find(By.ID, "item-label").is_displayed(), "the item picker")
    find(By.ID, "store-input").send_keys(str(store))
    find(By.ID, "load-button").click()
    title = f"Store {store} item {items[0]}: forecast run"
    _wait(lambda: find(By.ID, "chart-title").text.startswith(title), "the first item's chart")
    picker = Select(find(By.ID, "item-select"))
    assert [int(o.text) for o in picker.options] == items
    assert find(By.ID, "forecast-line").get_attribute("d").count("L") == 47  # 48 days
    picker.select_by_visible_text(str(items[-1]))
    _wait(lambda: find(By.ID, "chart-title").text.startswith(f"Store {store} item {items[-1]}:"), "the other item")
    assert "error" not in find(By.ID, "status").get_attribute("class")
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], errors
