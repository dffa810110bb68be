"""Content results previewed as forest plots: A/B tests (difference and interval per metric) and
off-policy estimates with bootstrap intervals, recognised from the toolkit's own result objects."""

from __future__ import annotations

import re

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("scipy")

from reelflow.cards._intervals import intervals_of  # noqa: E402
from reelflow.cards._preview import preview  # noqa: E402
from reelflow.cards._render import render_preview  # noqa: E402


def _rows(svg: str) -> dict[str, str]:
    """label -> the colour of its estimate's dot."""
    return dict(re.findall(r'<g class="rf-interval" data-label="([^"]*)">.*?<circle [^>]*fill="([^"]+)"', svg))


def test_an_ab_table_is_a_forest_plot_with_significance_colours():
    from reelflow.content.experiments import compare, cuped

    rng = np.random.default_rng(1)
    pre_c, pre_t = rng.normal(5, 1, 600), rng.normal(5, 1, 600)
    table = pd.concat([
        compare(rng.normal(1, 1, 600), rng.normal(1.4, 1, 600), metric="plays"),  # clearly up
        compare(rng.normal(1, 1, 600), rng.normal(0.6, 1, 600), metric="<b>minutes</b>"),  # clearly down
        cuped(pre_c + rng.normal(0, 1, 600), pre_t + rng.normal(0, 1, 600), pre_c, pre_t, metric="retention"),
    ], ignore_index=True)
    p = preview(table, name="ab")
    iv = p["intervals"]
    assert iv["labels"] == ["plays", "<b>minutes</b>", "retention"] and iv["ref"] == 0.0
    assert iv["est"] == pytest.approx(table["difference"].tolist())
    assert iv["lo"] == pytest.approx(table["ci_lower"].tolist()) and iv["hi"] == pytest.approx(table["ci_upper"].tolist())
    html = render_preview(p)
    assert html.index('<svg class="rf-forest"') < html.index('<table class="rf-table"')  # plot, then the table
    assert _rows(html) == {"plays": "#2da44e", "&lt;b&gt;minutes&lt;/b&gt;": "#cf222e", "retention": "#0969da"}
    assert "<b>minutes</b>" not in html
    assert 'class="rf-ref"' in html  # the no-effect line at 0


def test_off_policy_intervals_are_recognised_in_both_shapes():
    from reelflow.content.ope import (
        DirectMethod,
        DoublyRobust,
        InverseProbabilityWeighting,
        OffPolicyEvaluation,
    )

    rng = np.random.default_rng(0)
    n, k = 400, 3
    bf = {"n_rounds": n, "n_actions": k, "action": rng.integers(0, k, n), "position": np.zeros(n, int),
          "pscore": np.full(n, 1 / k), "reward": rng.binomial(1, 0.3, n).astype(float), "len_list": 1}
    ad = rng.dirichlet(np.ones(k), size=n)[:, :, None]
    q = rng.uniform(0, 1, (n, k, 1))
    ope = OffPolicyEvaluation(bandit_feedback=bf, ope_estimators=[InverseProbabilityWeighting(), DirectMethod(),
                                                                    DoublyRobust()])
    by_dict = ope.estimate_intervals(ad, q, n_bootstrap_samples=50, random_state=0)
    iv = preview(by_dict)["intervals"]
    assert iv["labels"] == list(by_dict) and iv["level"] == "95.0%" and iv["ref"] is None
    assert iv["est"] == pytest.approx([v["mean"] for v in by_dict.values()])
    _, frame = ope.summarize_off_policy_estimates(ad, q, n_bootstrap_samples=50, random_state=0)
    iv2 = preview(frame)["intervals"]
    assert iv2["labels"] == [str(i) for i in frame.index] and len(iv2["lo"]) == 3
    assert len(_rows(render_preview(preview(frame)))) == 3


@pytest.mark.parametrize("value", [
    pd.DataFrame({"a": [1, 2], "b": [3, 4]}),
    {"x": 1, "y": 2},
    {"x": {"mean": 1.0}},  # no interval
    pd.DataFrame({"difference": [0.1], "ci_lower": ["?"], "ci_upper": [0.2]}),  # not numbers
])
def test_other_tables_and_dicts_get_no_plot(value):
    assert intervals_of(value) is None
    assert "rf-forest" not in render_preview(preview(value))
