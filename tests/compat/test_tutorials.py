"""The tutorials in examples/tutorials run, on a small sample of the bundled MovieLens data, and get it right."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")

TUTORIALS = Path(__file__).resolve().parents[2] / "examples" / "tutorials"


@pytest.fixture
def sample(tmp_path):
    """The first 300 movies of ml-latest-small and up to 4,000 of their ratings."""
    from reelflow.recs.datasets import MOVIELENS_SMALL_DIR

    movies = pd.read_csv(MOVIELENS_SMALL_DIR / "movies.csv").head(300)
    ratings = pd.read_csv(MOVIELENS_SMALL_DIR / "ratings.csv")
    ratings = ratings[ratings["movieId"].isin(movies["movieId"])].head(4000)
    movies.to_csv(tmp_path / "movies.csv", index=False)
    ratings.to_csv(tmp_path / "ratings.csv", index=False)
    return tmp_path / "movies.csv", tmp_path / "ratings.csv", movies, ratings


def _run(rel: str, *args: str) -> str:
    path = TUTORIALS / rel
    proc = subprocess.run([sys.executable, str(path), "run", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "REELFLOW_PROGRESS": "0"}, cwd=path.parent)
    assert proc.returncode == 0, f"{rel}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _latest(flow: str):
    from reelflow import Flow

    run = Flow(flow).latest_run
    assert run is not None and run.successful
    return run


def _genres(text: str) -> list[str]:
    return text.split("|")


def test_helloworld_and_playlist(sample):
    movies_csv, _, movies, _ = sample
    assert "Hi there, from reelflow!" in _run("00-helloworld/helloworld.py")
    assert _latest("HelloFlow").data.message == "Hi there, from reelflow!"
    _run("01-playlist/playlist.py", "--movie-data", str(movies_csv), "--genre", "Comedy", "--count", "4")
    data = _latest("PlayListFlow").data
    genre_of = dict(zip(movies["title"], movies["genres"].map(_genres)))
    assert len(data.playlist) == 4 and len(set(data.playlist)) == 4
    assert all("Comedy" in genre_of[t] for t in data.playlist)
    assert "Comedy" not in genre_of[data.bonus]


def test_statistics_then_the_playlists_that_read_them(sample):
    movies_csv, ratings_csv, movies, ratings = sample
    _run("02-statistics/stats.py", "--movie-data", str(movies_csv), "--ratings-data", str(ratings_csv))
    stats_run = _latest("MovieStatsFlow")
    stats = stats_run.data.genre_stats
    # the same figures, computed here independently
    per_movie = ratings.groupby("movieId")["rating"].agg(["mean", "count"]).reset_index().merge(movies, on="movieId")
    exploded = per_movie.assign(genre=per_movie["genres"].map(_genres)).explode("genre")
    exploded = exploded[exploded["genre"] != "(no genres listed)"]
    assert sorted(stats) == sorted(exploded["genre"].unique())
    for genre, g in exploded.groupby("genre"):
        assert stats[genre]["movies"] == len(g)
        assert stats[genre]["quartiles"] == pytest.approx(list(g["mean"].quantile([0.25, 0.5, 0.75])))
    assert len(stats_run["compute_statistics"].tasks()) == len(stats)  # one task per genre

    _run("03-playlist-redux/playlist_redux.py", "--genre", "Drama", "--count", "3")
    redux = _latest("PlayListReduxFlow").data
    assert redux.stats_run == stats_run.pathspec
    q3 = stats["Drama"]["quartiles"][2]
    mean_of = dict(zip(per_movie["title"], per_movie["mean"]))
    drama = exploded[exploded["genre"] == "Drama"]
    assert len(redux.playlist) == min(3, int((drama["mean"] >= q3).sum()))
    assert all(t in set(drama["title"]) and mean_of[t] >= q3 for t in redux.playlist)
    assert redux.bonus[1] != "Drama" and redux.bonus[0] == stats[redux.bonus[1]]["top"]

    path = TUTORIALS / "04-playlist-plus" / "playlist_plus.py"
    proc = subprocess.run([sys.executable, str(path), "--config-value", "settings",
                           '{"count": 3, "min_ratings": 2, "seed": 1}', "run", "--hint", "toy storry"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "REELFLOW_PROGRESS": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sum(ln.startswith("warning:") and "@pypi_base" in ln for ln in proc.stderr.splitlines()) == 1
    plus = _latest("PlayListPlusFlow").data
    assert plus.movie == "Toy Story (1995)" and plus.genre == "Adventure"
    assert plus.settings == {"count": 3, "min_ratings": 2, "seed": 1}
    adventure = set(exploded[(exploded["genre"] == "Adventure") & (exploded["count"] >= 2)]["title"])
    assert len(plus.playlist) == 3 and set(plus.playlist) <= adventure - {"Toy Story (1995)"}
