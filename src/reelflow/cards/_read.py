"""Reading cards back: ``get_cards("Flow/12/train/3")``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["StoredCard", "get_cards", "cards_of_task"]


@dataclass(frozen=True)
class StoredCard:
    """One stored card of a task attempt; :meth:`html` gives the self-contained page."""

    pathspec: str
    id: str
    type: str
    attempt: int
    key: str
    size: int
    updated_at: float
    final: bool
    _store: Any = None

    def document(self) -> dict[str, Any]:
        """The card's data (components as JSON)."""
        from ._storage import load_card

        return load_card(self._store, self.key, what=f"card {self.id!r} of {self.pathspec}")

    def html(self) -> str:
        """The card as one HTML page that opens offline."""
        from ._render import render_card_html

        return render_card_html(self.document())

    def get(self) -> str:
        """The card's HTML (Metaflow's name for :meth:`html`)."""
        return self.html()


def _card_rows(store: Store, run_id: str, step: str) -> list[dict[str, Any]]:
    from ._storage import card_rows

    return card_rows(store, run_id, step)


def cards_of_task(store: Store, flow: str, run_id: str, step: str, task_id: int,
                  attempt: int | None = None) -> list[StoredCard]:
    """Cards of one task: of ``attempt``, or of its latest attempt that has cards."""
    from ._storage import card_rows

    rows = card_rows(store, run_id, step, task_id)
    if not rows:
        return []
    pick = attempt if attempt is not None else max(r["attempt"] for r in rows)
    path = f"{flow}/{run_id}/{step}/{task_id}"
    return [StoredCard(path, r["card_id"], r["card_type"], r["attempt"], r["key"], r["size"], r["updated_at"],
                       bool(r["final"]), store) for r in rows if r["attempt"] == pick]


def get_cards(pathspec: Any, id: str | None = None, type: str | None = None, *,  # noqa: A002 - Metaflow's names
              attempt: int | None = None) -> list[StoredCard]:
    """The cards of task ``FLOW/RUN_ID/STEP/TASK_ID`` or of a client ``Task`` (its latest
    attempt unless ``attempt``); ``id`` and ``type`` keep only matching cards, as Metaflow.

    A task cloned by ``resume`` shows the cards of the task it was cloned from. A task
    still running shows its cards as last refreshed.
    """
    from ..client import Task, namespace
    from ..store import get_store

    if not isinstance(pathspec, str) and hasattr(pathspec, "pathspec"):
        pathspec = pathspec.pathspec
    if id is not None or type is not None:
        return [c for c in get_cards(pathspec, attempt=attempt)
                if (id is None or c.id == id) and (type is None or c.type == type)]

    bits = str(pathspec).strip("/").split("/")
    if len(bits) not in (3, 4) or not all(bits) or (len(bits) == 4 and not bits[3].isdigit()):
        raise NotFoundError(f"card pathspec {pathspec!r} is malformed; write it as FlowName/RUN_ID/step/TASK_ID "
                            "(or FlowName/RUN_ID/step for a step with one task)")
    store = get_store(create=False)
    if bits[1] == "latest":  # FlowName/latest: the newest run, as everywhere else
        from ..client import Run

        bits[1] = Run(f"{bits[0]}/latest", _store=store).id
    store.metadata.get_run(bits[0], bits[1])  # NotFoundError naming the run
    if len(bits) == 3:  # a step: its only task
        ids = sorted({r["task_id"] for r in store.metadata.tasks_of_run(bits[1], bits[2])})
        ids = ids or sorted({r["task_id"] for r in _card_rows(store, bits[1], bits[2])})
        if len(ids) != 1:
            raise NotFoundError(
                f"step {pathspec} has {len(ids)} tasks" + (f" ({', '.join(map(str, ids[:10]))})" if ids else "")
                + "; name one: FlowName/RUN_ID/step/TASK_ID")
        bits.append(str(ids[0]))
    flow, run_id, step, task_id = bits
    found = cards_of_task(store, flow, run_id, step, int(task_id), attempt)
    if not found:
        namespace(None)
        try:
            origin = Task(pathspec, _store=store).origin_pathspec
        except NotFoundError:
            origin = None
        if origin:
            return get_cards(origin, attempt=attempt)
    return found
