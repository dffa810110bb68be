"""A playlist of movies of one genre, plus a bonus movie of another, from MovieLens.

Two branches run at the same time and a join brings their results together.

    python playlist.py run                          # the bundled MovieLens movies, genre Sci-Fi
    python playlist.py run --genre Comedy --count 10
    python playlist.py run --movie-data movies.csv  # any MovieLens-style movies.csv
"""

import csv
import io
import random

from reelflow import FlowSpec, IncludeFile, Parameter, step
from reelflow.recs.datasets import MOVIELENS_SMALL_DIR


def read_movies(text):
    """movieId,title,genres rows -> {"title": [...], "genres": [[...], ...]} (columns, plain Python)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    return {"title": [r["title"] for r in rows], "genres": [r["genres"].split("|") for r in rows]}


class PlayListFlow(FlowSpec):
    """Pick movies of a genre at random, and one bonus movie of any other genre."""

    movie_data = IncludeFile("movie-data", default=str(MOVIELENS_SMALL_DIR / "movies.csv"),
                             help="A MovieLens movies.csv (movieId,title,genres).")
    genre = Parameter("genre", default="Sci-Fi", help="The genre of the playlist.")
    count = Parameter("count", default=5, help="How many movies the playlist has.")
    seed = Parameter("seed", default=7, help="Seed of the random picks (the same seed, the same playlist).")

    @step
    def start(self):
        """Read the movies (the file's contents were stored with the run when it started)."""
        self.movies = read_movies(self.movie_data)
        self.next(self.bonus_movie, self.genre_movies)

    @step
    def bonus_movie(self):
        """One movie that is not of the genre."""
        others = [t for t, g in zip(self.movies["title"], self.movies["genres"]) if self.genre not in g]
        self.bonus = random.Random(self.seed).choice(others)
        self.next(self.join)

    @step
    def genre_movies(self):
        """Movies of the genre, shuffled, the first `count` of them."""
        titles = [t for t, g in zip(self.movies["title"], self.movies["genres"]) if self.genre in g]
        random.Random(self.seed).shuffle(titles)
        self.playlist = titles[: self.count]
        self.next(self.join)

    @step
    def join(self, inputs):
        """Bring both branches' results together."""
        self.playlist = inputs.genre_movies.playlist
        self.bonus = inputs.bonus_movie.bonus
        self.next(self.end)

    @step
    def end(self):
        print(f"Playlist for movies in genre {self.genre!r}:")
        for i, title in enumerate(self.playlist, 1):
            print(f"  {i}. {title}")
        print(f"Bonus movie: {self.bonus}")


if __name__ == "__main__":
    PlayListFlow()
