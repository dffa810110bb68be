"""A better playlist: only movies that MovieStatsFlow (02-statistics) found to be rated well.

This flow reads another flow's results with the client, the way a notebook would.
Run 02-statistics first.

    python playlist_redux.py run --genre Drama
"""

import random

from reelflow import Flow, FlowSpec, Parameter, step


class PlayListReduxFlow(FlowSpec):
    """Movies of a genre whose mean rating is in the genre's top quartile, plus the best movie of another genre."""

    genre = Parameter("genre", default="Sci-Fi", help="The genre of the playlist.")
    count = Parameter("count", default=5, help="How many movies the playlist has.")
    seed = Parameter("seed", default=7, help="Seed of the random picks.")

    @step
    def start(self):
        """Load the newest successful statistics run and keep which run it was."""
        run = Flow("MovieStatsFlow").latest_successful_run
        if run is None:
            raise RuntimeError("no successful MovieStatsFlow run; run 02-statistics/stats.py first")
        self.stats_run = run.pathspec
        self.dataframe = run["start"].task.data.dataframe
        self.genre_stats = run.data.genre_stats
        if self.genre not in self.genre_stats:
            raise ValueError(f"genre {self.genre!r} is not one of {', '.join(self.genre_stats)}")
        self.next(self.bonus_movie, self.genre_movies)

    @step
    def bonus_movie(self):
        """The best movie of a genre picked at random among the others."""
        rng = random.Random(self.seed)
        other = rng.choice(sorted(g for g in self.genre_stats if g != self.genre))
        self.bonus = (self.genre_stats[other]["top"], other)
        self.next(self.join)

    @step
    def genre_movies(self):
        """Movies of the genre at or above its third quartile, shuffled."""
        q3 = self.genre_stats[self.genre]["quartiles"][2]
        df = self.dataframe
        mask = df["genres"].str.split("|").apply(lambda gs: self.genre in gs) & (df["mean"] >= q3)
        titles = sorted(df[mask]["title"])
        random.Random(self.seed).shuffle(titles)
        self.playlist = titles[: self.count]
        self.next(self.join)

    @step
    def join(self, inputs):
        self.merge_artifacts(inputs)  # playlist from one branch, bonus from the other, the rest shared
        self.next(self.end)

    @step
    def end(self):
        print(f"From the statistics of {self.stats_run}:")
        print(f"Playlist for movies in genre {self.genre!r}:")
        for i, title in enumerate(self.playlist, 1):
            print(f"  {i}. {title}")
        print(f"Bonus movie: {self.bonus[0]} (the best of {self.bonus[1]})")


if __name__ == "__main__":
    PlayListReduxFlow()
