"""Garbage collection of the blob store: what dead writers and deleted runs left behind.

Three kinds of files go:

- ``.tmp-*`` partial blobs of writers that were killed mid-write;
- blobs no metadata row refers to (artifacts, task logs and the chunks their
  manifests list, parameter values of runs, registered model versions);
- quarantined blobs (moved aside when a read found them corrupt).

Safe beside running flows: only files older than the grace period *and* older than
the start of every run still going are candidates (a live run's blobs are not
referenced until its tasks end), each is checked again just before it is deleted,
and a writer that stores an existing value refreshes the file's time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import Store

__all__ = ["GcReport", "collect_garbage", "referenced_keys"]

_LOG_MANIFEST = "reelflow.log-manifest/"


@dataclass
class GcReport:
    """What a collection removed (or, with ``dry_run``, would remove): counts and bytes per kind."""

    dry_run: bool
    cutoff: float
    kept: int = 0
    removed: dict[str, list[int]] = field(default_factory=lambda: {"tmp": [0, 0], "blob": [0, 0], "quarantine": [0, 0]})

    @property
    def freed_bytes(self) -> int:
        return sum(b for _, b in self.removed.values())

    @property
    def freed_files(self) -> int:
        return sum(n for n, _ in self.removed.values())

    def summary(self) -> str:
        verb = "would free" if self.dry_run else "freed"
        t, b, q = (self.removed[k] for k in ("tmp", "blob", "quarantine"))
        return (f"{verb} {_size(self.freed_bytes)} in {self.freed_files} files: {t[0]} partial writes "
                f"({_size(t[1])}), {b[0]} unreferenced blobs ({_size(b[1])}), {q[0]} quarantined "
                f"({_size(q[1])}); kept {self.kept} blobs")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def referenced_keys(store: Store) -> set[str]:
    """Every blob key a metadata row refers to, log manifest chunks included."""
    md = store.metadata
    keys, log_keys = md.referenced_blob_keys()
    keys |= log_keys
    for k in log_keys:
        try:
            value = store.load(k, what="log")
        except Exception:
            continue  # missing or corrupt: nothing more to keep for it
        if isinstance(value, dict) and str(value.get("format", "")).startswith(_LOG_MANIFEST):
            keys.update(str(c) for c in value.get("chunks", ()))
    return keys


def collect_garbage(store: Store, *, grace: float = 3600.0, dry_run: bool = False) -> GcReport:
    """Remove partial, unreferenced and quarantined blob files older than ``grace`` seconds."""
    now = time.time()
    cutoff = now - grace
    live = [r["created_at"] for r in store.metadata.list_runs() if r["status"] == "running"]
    if live:
        cutoff = min(cutoff, min(live) - grace)
    report = GcReport(dry_run=dry_run, cutoff=cutoff)
    candidates: list[Any] = []
    for f in store.blobs.files():
        if f.mtime >= cutoff:
            if f.kind == "blob":
                report.kept += 1
            continue
        candidates.append(f)
    refs = referenced_keys(store)  # after listing: a blob listed above and referenced since is kept
    for f in candidates:
        if f.kind == "blob" and f.path.rsplit("/", 1)[-1] in refs:
            report.kept += 1
            continue
        if not dry_run:
            m = store.blobs.mtime(f.path)
            if m is None or m >= cutoff:  # gone, or stored again meanwhile
                report.kept += f.kind == "blob"
                continue
            store.blobs.remove(f.path)
        report.removed[f.kind][0] += 1
        report.removed[f.kind][1] += f.size
    return report
