"""Progress on long fits, evaluations and tuning (issue #9): plain lines without control
characters in logs, a bar in a terminal, silence when disabled."""

from __future__ import annotations

import io
import re

import pytest

from reelflow._progress import progress, progress_enabled, progress_scope
from reelflow.recs import ALS, EASE, ItemKNN, datasets, evaluate, temporal_split, tune

CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # anything but "\n": no \r, no escape sequences


@pytest.fixture(scope="module")
def data():
    return datasets.synthetic(n_users=120, n_items=60, n_interactions=2_000, seed=1)


@pytest.fixture
def every_update(monkeypatch):
    """Progress lines as soon as there is progress (the default waits 5 s between lines)."""
    monkeypatch.setenv("REELFLOW_PROGRESS_INTERVAL", "0")
    monkeypatch.delenv("REELFLOW_PROGRESS", raising=False)


def lines(text: str) -> list[str]:
    assert not CONTROL.search(text), repr(text)
    return [ln for ln in text.splitlines() if ln]


def test_long_fit_prints_plain_lines_in_logs(data, every_update, capsys):
    ALS(factors=4, iterations=5, num_threads=1).fit(data)
    out = lines(capsys.readouterr().err)
    assert out[-1].startswith("[reelflow] ALS fit (120 users x 60 items): 5/5 iterations (100%)")
    assert out[-1].endswith("done")
    assert any("1/5 iterations (20%)" in ln and "left" in ln for ln in out)


def test_evaluate_and_tune_report_progress_and_keep_inner_work_quiet(data, every_update, capsys):
    train, test = temporal_split(data, 0.2)
    evaluate(ItemKNN(k=5).fit(train, verbose=False), train, test)
    out = lines(capsys.readouterr().err)
    assert out and all(ln.startswith("[reelflow] evaluate ItemKNN: ") for ln in out), out
    tune(ItemKNN, {"k": [3, 5, 8]}, train, test)
    out = lines(capsys.readouterr().err)
    assert any("tune ItemKNN (3 candidates, ndcg@10 on validation): 3/3 candidates (100%)" in ln for ln in out)
    assert any("best=" in ln for ln in out)
    assert not any("ItemKNN fit" in ln or "evaluate" in ln for ln in out), out


def test_disabled_progress_is_silent(data, every_update, capsys, monkeypatch):
    ALS(factors=4, iterations=3, num_threads=1).fit(data, verbose=False)
    train, test = temporal_split(data, 0.2)
    tune(ItemKNN, {"k": [3]}, train, test, verbose=False)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("REELFLOW_PROGRESS", "0")
    ItemKNN(k=3).fit(data)
    evaluate(ItemKNN(k=3).fit(train), train, test)
    assert capsys.readouterr().err == ""
    assert progress_enabled(True) and not progress_enabled()
    with progress_scope(True):
        assert progress_enabled()


def test_short_work_prints_nothing_and_lines_come_at_most_every_tenth(monkeypatch):
    out = io.StringIO()
    with progress(10, "quick", interval=3600, file=out) as bar:
        for _ in range(10):
            bar.update()
    assert out.getvalue() == ""
    from reelflow import _progress

    class Clock:  # the work starts at t=0, then every update happens at t=100 s
        now = 0.0

        def monotonic(self) -> float:
            t, self.now = self.now, 100.0
            return t

    monkeypatch.setattr(_progress, "time", Clock())
    out = io.StringIO()
    with progress(1000, "steady", interval=5, file=out) as bar:
        for _ in range(1000):
            bar.update()
    got = lines(out.getvalue())
    assert 2 <= len(got) <= 11, got  # not one line per update
    assert got[-1].startswith("[reelflow] steady: 1,000/1,000 its (100%)") and got[-1].endswith("done")


def test_failed_work_does_not_say_done():
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        with progress(4, "doomed", interval=0, file=out) as bar:
            bar.update()
            raise RuntimeError("boom")
    assert lines(out.getvalue())[-1].endswith("stopped by an error")


def test_terminal_gets_a_bar():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    with progress(3, "bar", file=term, verbose=True) as bar:
        assert bar.mode == "bar"
        bar.update(3)
    assert "bar" in term.getvalue() and "3/3" in term.getvalue()


def test_ease_says_it_is_cubic_in_the_items(data, every_update, capsys, monkeypatch):
    from reelflow.recs import _ease

    assert "O(items³)" in (EASE.__doc__ or "")
    monkeypatch.setattr(_ease, "_NOTE_ABOVE_ITEMS", 10)
    EASE(l2=10.0).fit(data)
    out = lines(capsys.readouterr().err)
    assert "EASE fit: inverting a 60 x 60 item matrix, O(items³) time" in out[0]
    assert "min_item_interactions" in out[0]
