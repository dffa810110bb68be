"""Cards: a report per task, built in the step, stored with the task, shown in the UI.

::

    from reelflow import FlowSpec, card, current, step
    from reelflow.cards import Markdown, Table, VegaChart

    class TrainFlow(FlowSpec):
        @card                                   # default card: the step's artifacts
        @step
        def start(self):
            current.card.append(Markdown("# Tuning grid"))
            current.card.append(Table(results_df))
            current.card.refresh()              # the UI shows it while the task runs
            self.next(self.end)

``reelflow card get FLOW/RUN/STEP/TASK out.html`` writes one self-contained HTML
file; :func:`get_cards` reads cards from Python.
"""

from __future__ import annotations

from ..flows._decorators import card
from ._collector import REFRESH_INTERVAL, CardCollector, TaskCards
from ._components import Artifact, CardComponent, Image, Markdown, ProgressBar, Table, VegaChart
from ._more import Error, JSONViewer, PythonCode, ValueBox, YAMLViewer
from ._preview import preview
from ._read import StoredCard, get_cards
from ._render import render_card_html

MetaflowCardComponent = CardComponent  # Metaflow's name for the base of card components

__all__ = [
    "card",
    "Markdown",
    "Table",
    "Image",
    "VegaChart",
    "ProgressBar",
    "Artifact",
    "PythonCode",
    "ValueBox",
    "JSONViewer",
    "YAMLViewer",
    "Error",
    "CardComponent",
    "MetaflowCardComponent",
    "CardCollector",
    "TaskCards",
    "StoredCard",
    "get_cards",
    "render_card_html",
    "preview",
    "REFRESH_INTERVAL",
]
