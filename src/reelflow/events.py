"""Publish and list events: ``from reelflow import events; events.publish("ratings.arrived", {"day": 3})``.

Deployments whose flow has ``@trigger(event="ratings.arrived")`` start a run for each
event (see :mod:`reelflow.operate`).
"""

from __future__ import annotations

from .operate._events import list_events, publish

__all__ = ["publish", "list_events"]
