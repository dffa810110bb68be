"""Asynchronous generation over HTTP: submit a job, poll it, read the image.

Mounted by :func:`~reelflow.serving.create_app` when the served model generates
images (a :class:`reelflow.generate.Sketch2Background`) instead of recommending:

- ``POST /v1/models/{name}/generate`` with ``{"sketch": "<base64 PNG>", "seed": 0}``
  checks the image at once (not an image, wrong size or mode: 422 naming it),
  queues the job and answers ``202 {"job_id": ..., "status": "queued"}``; when
  ``max_queue`` jobs already wait, it answers 429 with ``Retry-After``.
- ``GET /v1/jobs/{id}``: ``queued`` / ``running`` / ``done`` (with the PNG as
  base64, the model version that made it and the seed) / ``failed`` (with the
  error); an unknown id is a 404. ``GET /v1/jobs/{id}/image.png`` returns the PNG.

One worker thread generates, one job at a time (generation uses every core it
is given; two at once would only take turns). Each job reads the holder's model
when it starts, so an alias move hot-swaps generation like recommendation. The
latest ``keep`` finished jobs are kept; older ones are forgotten (404).
The token, body-size limit and loopback rules are the server's (``_guard``).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import queue
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

__all__ = ["GenerateRequest", "GenerationJobs", "mount_generation", "is_generator"]


def is_generator(model: Any) -> bool:
    """Whether ``model`` is served by generation routes (it generates and does not recommend)."""
    return callable(getattr(model, "generate", None)) and not callable(getattr(model, "recommend", None))


class GenerateRequest(BaseModel):
    """One sketch (a base64-encoded grayscale PNG of the model's size) and the seed of its noise."""

    model_config = ConfigDict(extra="forbid")

    sketch: StrictStr = Field(min_length=1)
    seed: StrictInt = Field(default=0, ge=0, le=2**63 - 1)


@dataclass
class _Job:
    id: str
    seed: int
    sketch: Any
    created_at: float
    status: str = "queued"
    version: int | None = None
    png: bytes | None = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    seq: int = field(default=0)

    def body(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = {"job_id": self.id, "status": self.status, "model": name, "seed": self.seed,
                               "version": self.version, "created_at": self.created_at,
                               "started_at": self.started_at, "finished_at": self.finished_at}
        if self.png is not None:
            out["image"] = base64.b64encode(self.png).decode()
            out["media_type"] = "image/png"
        if self.error is not None:
            out["error"] = self.error
        return out


class GenerationJobs:
    """A bounded queue of generation jobs and the worker thread that runs them."""

    def __init__(self, holder: Any, *, max_queue: int = 16, keep: int = 1000) -> None:
        self.holder = holder
        self.max_queue = max_queue
        self.keep = keep
        self.jobs: OrderedDict[str, _Job] = OrderedDict()
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._seq = itertools.count()

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def submit(self, sketch: Any, seed: int) -> _Job:
        with self._lock:
            if self._queue.qsize() >= self.max_queue:
                raise HTTPException(429, f"the generation queue is full ({self.max_queue} jobs wait); retry shortly",
                                    headers={"Retry-After": "2"})
            job = _Job(secrets.token_hex(8), seed, sketch, time.time(), seq=next(self._seq))
            self.jobs[job.id] = job
            while len(self.jobs) > self.keep + self.max_queue:  # forget the oldest finished jobs
                oldest = next(iter(self.jobs.values()))
                if oldest.status in ("queued", "running"):
                    break
                self.jobs.popitem(last=False)
            self._queue.put(job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="reelflow-generate", daemon=True)
                self._thread.start()
        return job

    def _work(self) -> None:
        from ..generate._images import png_bytes

        while True:
            job = self._queue.get()
            cur = self.holder.current  # read once per job: a hot swap applies from the next job
            job.status, job.started_at, job.version = "running", time.time(), cur.version
            try:
                img = cur.model.generate(job.sketch[None], seeds=[job.seed])[0]
                job.png = png_bytes(img, {"reelflow:model": f"{self.holder.name}/{cur.version}",
                                          "reelflow:seed": str(job.seed)})
                job.status = "done"
            except Exception as exc:  # noqa: BLE001 - a failed job is reported, the worker goes on
                job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
            finally:
                job.sketch = None
                job.finished_at = time.time()
                self._queue.task_done()


def mount_generation(app: FastAPI, holder: Any, *, max_queue: int = 16) -> GenerationJobs:
    """Add the generation routes to ``app`` (see the module docstring)."""
    from ..generate._images import ImageInputError, read_sketch

    jobs = GenerationJobs(holder, max_queue=max_queue)
    app.state.generation = jobs

    @app.post("/v1/models/{name}/generate", status_code=202)
    async def generate(name: str, req: GenerateRequest) -> JSONResponse:
        """Queue one sketch for generation; answers the job id at once (202)."""
        cur = holder.current
        if name != holder.name:
            raise HTTPException(404, f"model {name!r} is not served here; this server serves {holder.name!r}")
        try:
            data = base64.b64decode(req.sketch, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(422, "sketch is not base64; send the PNG file's bytes base64-encoded") from None
        size = int(getattr(cur.model, "size", 0))
        try:
            sketch = read_sketch(data, size, name="sketch")
        except ImageInputError as exc:
            raise HTTPException(422, str(exc)) from None
        job = jobs.submit(sketch, req.seed)
        return JSONResponse({"job_id": job.id, "status": job.status, "model": holder.name,
                             "poll": f"/v1/jobs/{job.id}"}, status_code=202)

    def _job(job_id: str) -> _Job:
        job = jobs.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r} on this server (unknown, or finished long ago)")
        return job

    @app.get("/v1/jobs/{job_id}")
    async def job_status(job_id: str) -> dict[str, Any]:
        """A job's status; when done, the image (base64 PNG), the model version and the seed."""
        return _job(job_id).body(holder.name)

    @app.get("/v1/jobs/{job_id}/image.png")
    async def job_image(job_id: str) -> Response:
        """The generated PNG (409 while the job is not done)."""
        job = _job(job_id)
        if job.png is None:
            raise HTTPException(409, f"job {job_id} is {job.status}; poll /v1/jobs/{job_id} until it is done")
        return Response(job.png, media_type="image/png")

    return jobs
