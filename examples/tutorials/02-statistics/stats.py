"""Rating statistics per genre of MovieLens, computed genre by genre in parallel (foreach).

    python stats.py run
    python stats.py run --movie-data movies.csv --ratings-data ratings.csv

Afterwards, in a notebook or script::

    from reelflow import Flow
    stats = Flow("MovieStatsFlow").latest_successful_run.data.genre_stats
    stats["Comedy"]["quartiles"]
"""

import io

from reelflow import FlowSpec, IncludeFile, step
from reelflow.recs.datasets import MOVIELENS_SMALL_DIR


class MovieStatsFlow(FlowSpec):
    """For each genre: how many rated movies, the quartiles of their mean rating, the best of them."""

    movie_data = IncludeFile("movie-data", default=str(MOVIELENS_SMALL_DIR / "movies.csv"),
                             help="A MovieLens movies.csv (movieId,title,genres).")
    ratings_data = IncludeFile("ratings-data", default=str(MOVIELENS_SMALL_DIR / "ratings.csv"),
                               help="A MovieLens ratings.csv (userId,movieId,rating,timestamp).")

    @step
    def start(self):
        """One row per rated movie with its mean rating, then one branch per genre."""
        import pandas as pd

        movies = pd.read_csv(io.StringIO(self.movie_data))
        ratings = pd.read_csv(io.StringIO(self.ratings_data))
        per_movie = ratings.groupby("movieId")["rating"].agg(["mean", "count"]).reset_index()
        self.dataframe = movies.merge(per_movie, on="movieId")
        self.genres = sorted({g for gs in self.dataframe["genres"] for g in gs.split("|")} - {"(no genres listed)"})
        self.next(self.compute_statistics, foreach="genres")

    @step
    def compute_statistics(self):
        """The statistics of one genre (self.input)."""
        self.genre = self.input
        df = self.dataframe[self.dataframe["genres"].str.split("|").apply(lambda gs: self.genre in gs)]
        self.quartiles = [float(q) for q in df["mean"].quantile([0.25, 0.5, 0.75])]
        # the best movie with a few ratings at least (one 5-star rating is not a favourite)
        rated = df[df["count"] >= min(5, int(df["count"].max()))]
        self.top = str(rated.sort_values(["mean", "count"], ascending=False)["title"].iloc[0])
        self.movies = int(len(df))
        self.next(self.join)

    @step
    def join(self, inputs):
        """Collect every genre's statistics in one dict."""
        self.genre_stats = {i.genre: {"movies": i.movies, "quartiles": i.quartiles, "top": i.top} for i in inputs}
        self.next(self.end)

    @step
    def end(self):
        for genre, s in self.genre_stats.items():
            q = ", ".join(f"{x:.2f}" for x in s["quartiles"])
            print(f"{genre:<12} {s['movies']:>5} movies  mean rating quartiles [{q}]  top: {s['top']}")


if __name__ == "__main__":
    MovieStatsFlow()
