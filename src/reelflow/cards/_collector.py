"""``current.card``: the cards a running task builds, saved while it runs and when it ends."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import ReelflowError
from ._components import Artifact, CardComponent, Markdown, Table

if TYPE_CHECKING:
    from ..store import ArtifactRef, Store

__all__ = ["CardCollector", "TaskCards", "REFRESH_INTERVAL"]

#: Seconds between two saves of one card by :meth:`CardCollector.refresh` (later calls wait for the next).
REFRESH_INTERVAL = 1.0
DEFAULT_ID = "default"


class CardCollector:
    """One card of the running task: ``current.card.append(Markdown("# hello"))``.

    Components are kept in order; :meth:`refresh` stores the card now so that the UI
    shows it while the task runs (at most once a second), and the card is stored for
    good when the task ends, whatever its outcome.
    """

    def __init__(self, owner: TaskCards, card_id: str, card_type: str = "blank", title: str | None = None) -> None:
        self._owner = owner
        self.id = card_id
        self.type = card_type
        self.title = title
        self._components: list[CardComponent] = []
        self._last_save = 0.0
        self._dirty = False

    def append(self, component: CardComponent) -> None:
        """Add a component (Markdown, Table, Image, VegaChart, ProgressBar, Artifact) to the card."""
        if isinstance(component, str):
            component = Markdown(component)
        if not isinstance(component, CardComponent):
            raise ReelflowError(
                f"current.card.append() takes a card component (Markdown, Table, Image, VegaChart, ProgressBar, "
                f"Artifact), not {type(component).__name__}; wrap a value as Artifact(value)"
            )
        self._components.append(component)
        self._dirty = True

    def extend(self, components: Iterable[CardComponent]) -> None:
        """Add several components."""
        for c in components:
            self.append(c)

    def clear(self) -> None:
        """Remove every component."""
        self._components.clear()
        self._dirty = True

    def __iter__(self) -> Iterator[CardComponent]:
        return iter(self._components)

    def __len__(self) -> int:
        return len(self._components)

    def __getitem__(self, card_id: str) -> CardCollector:
        """Another card of the same task: ``current.card["gallery"].append(...)``."""
        return self._owner.card(card_id)

    def refresh(self) -> None:
        """Store the card as it is now, so the UI shows it while the task still runs.

        Calls closer together than :data:`REFRESH_INTERVAL` seconds are merged: the
        latest content is stored at the next call after the interval, or when the task ends.
        """
        self._dirty = True
        now = time.monotonic()
        if now - self._last_save < REFRESH_INTERVAL:
            return
        self._last_save = now
        self._owner._save(self, final=False)

    def document(self, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The card as JSON-safe data (what is stored)."""
        o = self._owner
        return {
            "format": "reelflow.card/1",
            "id": self.id,
            "type": self.type,
            "title": self.title or f"{o.pathspec} ({self.id})",
            "pathspec": o.pathspec,
            "attempt": o.attempt,
            "created_at": time.time(),
            "components": (extra or []) + [c.to_dict() for c in self._components],
        }

    def __repr__(self) -> str:
        return f"<card {self.id!r} of {self._owner.pathspec}: {len(self)} components>"


class TaskCards:
    """All cards of one task attempt (created by the runtime for each task; cheap until used)."""

    def __init__(self, store: Store, *, flow_name: str, run_id: str, step_name: str, task_id: int, attempt: int,
                 decorator: Any = None) -> None:
        self.store = store
        self.run_id = run_id
        self.step_name = step_name
        self.task_id = task_id
        self.attempt = attempt
        self.pathspec = f"{flow_name}/{run_id}/{step_name}/{task_id}"
        self.decorator = decorator
        self._cards: dict[str, CardCollector] = {}
        if decorator is not None:
            cid = decorator["id"] or DEFAULT_ID
            self._cards[cid] = CardCollector(self, cid, decorator["type"], decorator["title"])

    @property
    def main(self) -> CardCollector:
        """The card ``current.card`` appends to: the step's ``@card``, else a blank card made on first use."""
        if self._cards:
            return next(iter(self._cards.values()))
        return self.card(DEFAULT_ID)

    def card(self, card_id: str) -> CardCollector:
        if not isinstance(card_id, str) or not card_id or len(card_id) > 200:
            raise ReelflowError(f"card id {card_id!r} must be a non-empty string of at most 200 characters")
        if card_id not in self._cards:
            self._cards[card_id] = CardCollector(self, card_id)
        return self._cards[card_id]

    def _save(self, card: CardCollector, *, final: bool, extra: list[dict[str, Any]] | None = None) -> None:
        from ._storage import save_card

        save_card(self.store, run_id=self.run_id, step_name=self.step_name, task_id=self.task_id,
                  attempt=self.attempt, card_id=card.id, card_type=card.type, doc=card.document(extra), final=final)
        card._dirty = False

    def finish(self, values: dict[str, Any], refs: dict[str, ArtifactRef], status: str, *,
               params: dict[str, Any] | None = None) -> None:
        """Store every card for good (the runtime calls this when the attempt ends).

        A ``default`` card starts with the task's info (pathspec, attempt, status), the
        run's parameters (``params``) and its artifacts: previews of the values this task
        set (``values``) and the name, type and size of those it carried forward.
        A failure here is reported on stderr and never fails the task.
        """
        for card in list(self._cards.values()):
            try:
                extra: list[dict[str, Any]] = []
                if card.type == "default":
                    extra = _artifact_components(values, refs, status, self, params or {})
                self._save(card, final=True, extra=extra)
            except Exception as exc:  # noqa: BLE001 - a card must never fail the task
                print(f"reelflow: card {card.id!r} of {self.pathspec} could not be saved: "
                      f"{type(exc).__name__}: {exc}", file=sys.stderr)


def _artifact_components(values: dict[str, Any], refs: dict[str, ArtifactRef], status: str, task: TaskCards,
                         params: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [Markdown(f"**Task status:** {status}").to_dict(),
                                 Table([["pathspec", task.pathspec], ["attempt", task.attempt], ["status", status]],
                                       headers=["task", ""]).to_dict()]
    if params:
        out.append(Markdown("**Parameters**").to_dict())
        out.append(Table([[k, repr(v)[:200]] for k, v in params.items()], headers=["parameter", "value"]).to_dict())
    shown = [n for n in values if not n.startswith("_") and n not in params]
    for name in shown:
        out.append(Artifact(values[name], name=name).to_dict())
    carried = sorted(n for n in refs if n not in values and n not in params and not n.startswith("_"))
    if carried:
        out.append(Markdown("**Carried forward from earlier steps**").to_dict())
        out.append(Table([[n, refs[n].type, refs[n].size] for n in carried],
                         headers=["artifact", "type", "bytes"]).to_dict())
    return out
