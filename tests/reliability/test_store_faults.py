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
