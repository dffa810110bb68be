"""Custom card components: what a subclass that defines to_dict, render, or neither turns into."""

from __future__ import annotations

import pytest

from reelflow.cards import CardComponent, MetaflowCardComponent
from reelflow.errors import ReelflowError


def test_a_metaflow_style_component_with_render_is_shown_through_it():
    class Note(MetaflowCardComponent):
        def render(self):  # type: ignore[no-untyped-def]
            return "**done**"

    class Raw(CardComponent):
        def render(self):  # type: ignore[no-untyped-def]
            return {"type": "markdown", "text": "x", "when": object()}

    assert Note().to_dict() == {"type": "markdown", "text": "**done**"}
    out = Raw().to_dict()
    assert out["type"] == "markdown" and isinstance(out["when"], str)  # made JSON-safe


def test_a_component_with_neither_names_itself_and_the_fix():
    class Empty(CardComponent):
        pass

    with pytest.raises(ReelflowError, match=r"Empty cannot be shown: define to_dict\(\)"):
        Empty().to_dict()
