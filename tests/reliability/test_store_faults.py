"""Fault injection for the store: threads, damaged blobs, extreme metric values.

Bounded and local: no network, small data, every thread joined.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from reelflow.store._serialize import decode, encode


def _values(seed: int) -> list[object]:
    rng = np.random.default_rng(seed)
    return [
        np.zeros(200_000 + seed),  # compressible: goes through zstd
        rng.random(50_000),  # incompressible: stored raw
        {"text": "abc" * (1000 + seed), "n": seed},  # compressible pickle stream
        rng.integers(0, 255, 300_000, dtype=np.uint8).tobytes(),
    ]


def test_threads_encode_and_decode_concurrently_without_errors():
    n_threads, rounds = 8, 25
    start = threading.Barrier(n_threads)

    def work(i: int) -> int:
        start.wait(timeout=120)
        done = 0
        for r in range(rounds):
            for obj in _values(i * 1000 + r % 3):
                blob = encode(obj)
                back = decode(bytearray(b"".join(bytes(c) for c in blob.chunks)), blob.key)
                if isinstance(obj, np.ndarray):
                    assert np.array_equal(back, obj)
                else:
                    assert back == obj
                done += 1
        return done

    with ThreadPoolExecutor(n_threads) as pool:
        counts = list(pool.map(work, range(n_threads)))
    assert sum(counts) == n_threads * rounds * 4
    print(f"\nstore threads: {n_threads} threads, {sum(counts)} encode/decode round trips, 0 errors")


def test_threads_decoding_one_shared_blob_never_report_corruption():
    blob = encode(np.zeros(500_000))
    data = bytes(b"".join(bytes(c) for c in blob.chunks))

    def work(_: int) -> None:
        for _ in range(30):
            assert decode(bytearray(data), blob.key).shape == (500_000,)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))


def test_threads_saving_and_loading_through_one_store(reelflow_home):
    from reelflow.store import get_store

    store = get_store()
    shared = np.arange(300_000, dtype=np.float64)  # every thread writes this same blob at once

    def work(i: int) -> int:
        n = 0
        for r in range(10):
            for value in (shared, np.full(50_000, i * 100 + r, dtype=np.int64), f"text {i} {r}" * 300):
                ref = store.save(value)
                back = store.load(ref.key)
                assert np.array_equal(back, value) if isinstance(value, np.ndarray) else back == value
                n += 1
        return n

    with ThreadPoolExecutor(8) as pool:
        total = sum(pool.map(work, range(8)))
    assert total == 8 * 10 * 3
    assert not list((reelflow_home / "blobs").rglob(".tmp-*"))


# -- damaged blobs: detected on read, quarantined, healed by the next put ------------------


def _mutations(data: bytes, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    flips = []
    for _ in range(6):
        b = bytearray(data)
        pos = int(rng.integers(0, len(b)))
        b[pos] ^= 1 << int(rng.integers(0, 8))
        flips.append(("bit flip", bytes(b)))
    cut = int(rng.integers(1, len(data)))
    return [*flips, ("truncated", data[:cut]), ("empty", b""), ("appended", data + b"\0"),
            ("garbage", rng.bytes(len(data)))]


@pytest.mark.parametrize("value", [np.arange(20_000, dtype=np.float64), {"model": "x" * 5000, "k": [1, 2]},
                                   np.random.default_rng(1).random(3000)], ids=["compressible", "dict", "noise"])
def test_damaged_blobs_are_detected_quarantined_and_healed(reelflow_home, value):
    from reelflow.errors import CorruptArtifactError
    from reelflow.store import get_store

    store = get_store()
    ref = store.save(value)
    path = reelflow_home / "blobs" / ref.key[:2] / ref.key
    good = path.read_bytes()
    rng = np.random.default_rng(7)
    detected = healed = 0
    cases = _mutations(good, rng)
    for what, bad in cases:
        path.write_bytes(bad)
        with pytest.raises(CorruptArtifactError, match=f"blob {ref.key}.*moved to .*quarantine"):
            store.load(ref.key, what="artifact 'x'")
        detected += 1
        assert not path.exists(), what  # moved aside: the next put cannot skip it
        again = store.save(value)  # what the next run producing the same value does
        assert again.key == ref.key and path.read_bytes() == good, what
        back = store.load(ref.key)
        assert (np.array_equal(back, value) if isinstance(value, np.ndarray) else back == value), what
        healed += 1
        # damage that a read has not found yet is healed by the put itself (verify on collision)
        path.write_bytes(bad)
        store.save(value)
        assert path.read_bytes() == good, what
    quarantined = list((reelflow_home / "blobs" / "quarantine").iterdir())
    assert len(quarantined) == len(cases)
    print(f"\nstore blob mutations: {len(cases)} applied, {detected} detected, {len(quarantined)} quarantined, "
          f"{healed} healed by the next put")


def test_quarantine_never_moves_a_blob_another_process_already_rewrote(reelflow_home):
    from reelflow.store import get_store

    store = get_store()
    ref = store.save(list(range(1000)))
    path = reelflow_home / "blobs" / ref.key[:2] / ref.key
    good = path.read_bytes()
    assert store.blobs.quarantine(ref.key, good[:-1]) is None  # what the reader saw is not what is there now
    assert path.read_bytes() == good


# -- metric values at the edges of what the API accepts, on each database -------------------

EDGE_METRICS = [
    ("step.max", 1.0, 2**63 - 1),
    ("step.min", 2.0, -(2**63)),
    ("step.int32+1", 3.0, 2**31),
    ("n" * 1000, 4.0, 1),  # the longest name the API accepts
    ("é" * 1000, 5.0, 2),  # multibyte: 2000 bytes
    ("big", 1.7976931348623157e308, None),
    ("tiny", 5e-324, None),
    ("inf", float("inf"), None),
    ("-inf", float("-inf"), None),
    ("nan", float("nan"), None),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def metadata_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'edge.db'}"
    return request.getfixturevalue("postgres_url")


def test_metric_edge_values_round_trip(metadata_url):
    import math
    import time

    from reelflow.store import ArtifactRef, MetadataStore, TaskRecord

    md = MetadataStore(metadata_url)
    rid = md.create_run("Edge", user="u")
    now = time.time()
    rec = TaskRecord(step_name="start", task_id=1, attempt=0, status="succeeded", task_key="start", started_at=now,
                     finished_at=now, metrics=[(n, v, s, now) for n, v, s in EDGE_METRICS])
    md.record_task(rid, rec, {"big": ArtifactRef("k" * 32, 2**40, "numpy.ndarray")})  # a 1 TiB artifact
    rows = md.metrics_of([rid])
    assert [(r["name"], r["step"]) for r in rows] == [(n, s) for n, _, s in EDGE_METRICS]
    for r, (_, v, _) in zip(rows, EDGE_METRICS):
        assert (math.isnan(r["value"]) and math.isnan(v)) or r["value"] == v
    row_id = md.tasks_of_run(rid)[0]["id"]
    assert md.artifacts_of([row_id])[row_id]["big"].size == 2**40
    md.close()
    print(f"\nstore metric edges on {metadata_url.split(':')[0]}: {len(rows)} of {len(EDGE_METRICS)} round-tripped")


@pytest.mark.parametrize("name, step, match", [("s", 2**63, "outside the signed 64-bit range"),
                                               ("s", -(2**63) - 1, "outside the signed 64-bit range"),
                                               ("n" * 1001, 1, "1001 characters; the limit is 1000")])
def test_metric_values_the_schema_cannot_hold_are_refused_clearly(tmp_path, name, step, match):
    import time

    from reelflow.errors import StoreError
    from reelflow.store import MetadataStore, TaskRecord

    md = MetadataStore(f"sqlite:///{tmp_path / 'm.db'}")
    rid = md.create_run("Edge", user="u")
    rec = TaskRecord(step_name="start", task_id=1, attempt=0, status="succeeded", task_key="start",
                     started_at=time.time(), finished_at=time.time(), metrics=[(name, 1.0, step, time.time())])
    with pytest.raises(StoreError, match=match):
        md.record_task(rid, rec, {})
    assert md.tasks_of_run(rid) == []  # nothing half-written
