"""``python -m reelflow.runtime._spawn``: a spawned worker (used where fork is unavailable)."""

from ._worker import spawn_entry

if __name__ == "__main__":
    spawn_entry()
