"""The UI in a real browser (Debian's Chromium driven by Playwright), clicked through as a user.

Every page visited is saved as a screenshot in the test's output folder; with
``REELFLOW_UI_SCREENSHOTS=DIR`` the run page, the comparison and a deployment are also
written there as ``ui-run.png``, ``ui-compare.png`` and ``ui-deployment.png`` (the README's pictures).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("REELFLOW_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's (apt-get install -y chromium) to run the browser "
                "tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install playwright")
pytest.importorskip("fastapi")
pytest.importorskip("jinja2")
pytest.importorskip("python_multipart")

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]
TIMEOUT_MS = 60_000
sync_api.expect.set_options(timeout=TIMEOUT_MS)  # a loaded CI machine is slow


@contextmanager
def browser(shots: Path) -> Iterator[tuple]:
    """A fresh Chromium and page; yields (page, problems, shot) and closes every browser process."""
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=TIMEOUT_MS)
        try:
            ctx = b.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            ctx.set_default_timeout(TIMEOUT_MS)
            page = ctx.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))

            def shot(name: str) -> Path:
                path = shots / f"{name}.png"
                page.screenshot(path=str(path), full_page=True)
                return path

            yield page, problems, shot
        finally:
            b.close()


def _publish(path: Path, name: str) -> None:
    target = os.environ.get("REELFLOW_UI_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / name)


def test_click_through_runs_run_log_metrics_models_and_cards(ui_server, tmp_path):
    expect = sync_api.expect
    with browser(tmp_path / "screenshots") as (page, problems, shot):
        # runs list
        page.goto(ui_server.url + "/")
        expect(page.locator("tr.run-row")).to_have_count(2)
        expect(page.get_by_text("<script>alert('tag')</script>")).to_be_visible()  # a hostile tag, shown as text
        shot("runs")

        # a run with a failed step
        page.get_by_role("link", name="UiFlow/2", exact=True).click()
        expect(page.locator("h1")).to_contain_text("UiFlow/2")
        expect(page.locator('g.dag-node.status-failed[data-step="evaluate"]')).to_have_count(1)
        expect(page.locator("g.dag-node")).to_have_count(4)
        expect(page.locator("rect.gantt-bar")).to_have_count(3)
        _publish(shot("run"), "ui-run.png")

        # the failed task: exception and traceback
        page.locator("#step-evaluate a.task-link").click()
        expect(page.locator("#exception")).to_contain_text("ValueError: evaluation failed on purpose")
        shot("failed-task")

        # a task's log, searched and filtered; a hostile log line shown as text
        page.goto(ui_server.url + "/runs/UiFlow/1/start/1")
        expect(page.locator("#log-stdout")).to_contain_text("hello from start <script>alert('log')</script>")
        page.goto(ui_server.url + "/runs/UiFlow/1/train/2")
        expect(page.locator("#log-stdout")).to_contain_text("epoch 4 loss 0.1000")
        page.fill("#log-q", "epoch 3")
        page.get_by_role("button", name="Search").click()
        expect(page.locator("#matches-stdout")).to_contain_text("1 matching line")
        page.fill("#log-filter", "epoch 1")
        expect(page.locator("#log-stdout")).to_have_text("epoch 1 loss 0.2500")

        # the task's card: markdown escaped, progress, a Vega-Lite chart drawn inside the sandboxed frame
        frame = page.frame_locator("iframe.card-frame")
        expect(frame.locator(".rf-c-markdown h1")).to_have_text("Training <script>alert('card')</script>")
        expect(frame.locator(".rf-progress")).to_contain_text("5 / 5")
        expect(frame.locator(".rf-chart svg")).to_have_count(1)
        expect(frame.locator(".rf-chart svg path.mark-symbol, .rf-chart svg .mark-symbol path")).to_have_count(5)
        shot("task-card")

        # download the card's HTML and open it offline
        with page.expect_download() as dl:
            page.locator("a.card-download").click()
        saved = tmp_path / "card.html"
        dl.value.save_as(str(saved))
        assert "Training report" in saved.read_text()
        page.goto(saved.as_uri())
        expect(page.locator(".rf-chart svg")).to_have_count(1)
        expect(page.locator("h1.card-title")).to_have_text("Training report")
        shot("card-offline")

        # an artifact preview on the run page: hostile text stays text
        page.goto(ui_server.url + "/runs/UiFlow/1")
        page.locator("#step-start details.preview summary", has_text="note").click()
        expect(page.locator("#step-start details.preview[open] .preview-body")).to_contain_text(
            "<script>alert('artifact')</script>")

        # compare two runs: metric chart with one point per logged value, differences highlighted
        page.goto(ui_server.url + "/")
        for box in page.locator('input[name="run"][type="checkbox"]').all():
            box.check()
        page.locator("#compare-button").click()
        expect(page.locator('.chart-box[data-metric="loss"] circle.pt')).to_have_count(10)
        expect(page.locator('.chart-box[data-metric="loss"] g.series')).to_have_count(2)
        expect(page.locator("#compare-table tr.differs th", has_text="params.alpha")).to_have_count(1)
        _publish(shot("compare"), "ui-compare.png")

        # a model's alias history, and moving an alias from the page (a CSRF-protected POST)
        page.goto(ui_server.url + "/models")
        page.get_by_role("link", name="ui-model").click()
        expect(page.locator("#alias-history tr.history-row")).to_have_count(2)
        page.select_option("form.move-alias select[name=version]", "1")
        page.get_by_role("button", name="Move alias").click()
        expect(page.locator(".notice")).to_contain_text("Moved alias")
        expect(page.locator("#alias-history tr.history-row")).to_have_count(3)
        shot("model")
        page.select_option("form.move-alias select[name=version]", "2")
        page.get_by_role("button", name="Move alias").click()
        expect(page.locator("#alias-history tr.history-row")).to_have_count(4)

    assert problems == []


LIVE_FLOW = '''
import os, time
from reelflow import FlowSpec, current, step
from reelflow.cards import ProgressBar, card


class LiveFlow(FlowSpec):
    @card(type="blank")
    @step
    def start(self):
        bar = ProgressBar(max=2, label="waiting")
        current.card.append(bar)
        bar.update(1)
        current.card.refresh()
        print("waiting for the gate <b>now</b>")
        deadline = time.time() + 150
        while not os.path.exists(os.environ["GATE"]) and time.time() < deadline:
            time.sleep(0.05)
        bar.update(2)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    LiveFlow()
'''


def test_a_refreshed_card_updates_live(tmp_path, make_ui_server):
    home = tmp_path / "home"
    flow = tmp_path / "live_flow.py"
    flow.write_text(LIVE_FLOW)
    gate = tmp_path / "gate"
    env = {**os.environ, "REELFLOW_HOME": str(home), "GATE": str(gate), "REELFLOW_PROGRESS": "0"}
    run = subprocess.Popen([sys.executable, str(flow), "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=env, cwd=str(tmp_path), start_new_session=True)
    server = None
    try:
        deadline = time.monotonic() + 120
        while not (home / "metadata.db").exists() and time.monotonic() < deadline:
            assert run.poll() is None, run.stdout.read().decode() if run.stdout else ""
            time.sleep(0.1)
        server = make_ui_server(home, tmp_path / "ui.log")
        expect = sync_api.expect
        with browser(tmp_path / "screenshots") as (page, problems, shot):
            url = server.url + "/runs/LiveFlow/1/start/1"
            while time.monotonic() < deadline:  # the task page exists once the card was first refreshed
                assert run.poll() is None, run.stdout.read().decode() if run.stdout else ""
                if page.goto(url).status == 200:
                    break
                time.sleep(0.2)
            expect(page.locator("#task-status")).to_have_text("running")
            expect(page.frame_locator("iframe.card-frame").locator(".rf-progress")).to_contain_text("1 / 2")
            expect(page.locator("#log-stdout")).to_contain_text("waiting for the gate <b>now</b>")  # live output
            shot("live-running")
            # the runs list shows the run as running, and updates the badge in place when it ends
            list_page = page.context.new_page()
            list_page.goto(server.url + "/")
            badge = list_page.locator('.badge[data-run-id="1"]')
            expect(badge).to_have_text("running")
            list_page.evaluate("window.__marker = 1")  # gone if the page reloaded
            gate.write_text("go")
            expect(badge).to_have_text("succeeded", timeout=120_000)
            assert list_page.evaluate("window.__marker") == 1
            list_page.close()
            # the task page reloads itself once the task ended, showing the final card
            expect(page.locator("#task-status")).to_have_text("succeeded", timeout=120_000)
            expect(page.frame_locator("iframe.card-frame").locator(".rf-progress")).to_contain_text("2 / 2")
            shot("live-finished")
        assert problems == []
        assert run.wait(timeout=120) == 0
    finally:
        gate.write_text("go")
        if server is not None:
            server.stop()
        if run.poll() is None:
            os.killpg(run.pid, 9)
        run.wait(timeout=60)


def test_deployments_pages_pause_resume_and_follow_a_triggered_run(ops_home, make_ui_server, tmp_path):
    expect = sync_api.expect
    server = make_ui_server(ops_home, tmp_path / "ui.log")
    with browser(tmp_path / "screenshots") as (page, problems, shot):
        page.goto(server.url + "/")
        page.get_by_role("link", name="Deployments", exact=True).click()
        expect(page.locator("tr.deployment-row")).to_have_count(2)
        expect(page.locator("#recent-firings tr.firing-row")).to_have_count(2)
        expect(page.locator("#recent-firings")).to_contain_text("<script>alert('tag')</script>")  # payload as text
        shot("deployments")
        page.locator('tr.deployment-row[data-name="nightly"] a').first.click()
        expect(page.locator("#next-fires li")).to_have_count(5)
        expect(page.locator("#dep-versions tr.dep-version")).to_have_count(2)
        expect(page.locator("#dep-state")).to_have_text("active")
        page.get_by_role("button", name="Pause").click()
        expect(page.locator(".notice")).to_have_text("Deployment paused.")
        expect(page.locator("#dep-state")).to_have_text("paused")
        shot("deployment-paused")
        page.get_by_role("button", name="Resume").click()
        expect(page.locator("#dep-state")).to_have_text("active")
        _publish(shot("deployment"), "ui-deployment.png")
        page.locator("#firings a.firing-run").click()
        expect(page.locator("h1")).to_contain_text("NightlyFlow/1")
        # an A/B result artifact previews as a forest plot: one interval per metric, the lift marked significant
        page.locator("#step-start details.preview summary", has_text="ab").click()
        forest = page.locator("#step-start details.preview[open] svg.rf-forest")
        expect(forest.locator("g.rf-interval")).to_have_count(2)
        expect(forest.locator('g.rf-interval[data-label="plays"] circle[fill="#2da44e"]')).to_have_count(1)
        expect(forest.locator('g.rf-interval[data-label="minutes"] circle[fill="#0969da"]')).to_have_count(1)
        shot("ab-forest")
    assert problems == []
