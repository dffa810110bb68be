"""Name a movie you like; get a playlist of its genre, from the statistics of 02-statistics.

Shows three things Metaflow users know:

* ``--hint``: the movie whose title is closest to the hint (difflib; Metaflow's tutorial
  used the ``editdistance`` package) picks the genre;
* ``Config``: the playlist's settings come from a config, here a default value; change
  them without touching the code: ``--config-value settings '{"count": 3, "min_ratings": 10}'``;
* ``@pypi_base``: accepted and ignored (reelflow runs steps in this Python environment,
  with one warning saying so).

    python playlist_plus.py run --hint "toy story"
"""

import difflib
import random

from reelflow import Config, Flow, FlowSpec, Parameter, pypi_base, step


@pypi_base(packages={"pandas": ">=2.0"})
class PlayListPlusFlow(FlowSpec):
    """A playlist of the genre of the movie that best matches --hint."""

    settings = Config("settings", default_value={"count": 5, "min_ratings": 5, "seed": 7})
    hint = Parameter("hint", default="the matrix", help="A movie title you like, roughly spelled.")

    @step
    def start(self):
        run = Flow("MovieStatsFlow").latest_successful_run
        if run is None:
            raise RuntimeError("no successful MovieStatsFlow run; run 02-statistics/stats.py first")
        self.stats_run = run.pathspec
        df = run["start"].task.data.dataframe
        self.dataframe = df[df["count"] >= self.settings.min_ratings]
        self.next(self.match_hint)

    @step
    def match_hint(self):
        """The closest title (ignoring case and the year in brackets) and its first listed genre."""
        titles = list(self.dataframe["title"])
        bare = {t.lower().rsplit(" (", 1)[0]: t for t in titles}
        best = difflib.get_close_matches(self.hint.lower(), list(bare), n=1, cutoff=0.0)
        self.movie = bare[best[0]] if best else titles[0]
        row = self.dataframe[self.dataframe["title"] == self.movie].iloc[0]
        self.genre = row["genres"].split("|")[0]
        self.next(self.pick)

    @step
    def pick(self):
        """The best-rated movies of that genre, shuffled, without the hinted one."""
        df = self.dataframe
        mask = df["genres"].str.split("|").apply(lambda gs: self.genre in gs) & (df["title"] != self.movie)
        best = df[mask].sort_values(["mean", "count"], ascending=False).head(4 * self.settings.count)
        titles = list(best["title"])
        random.Random(self.settings.seed).shuffle(titles)
        self.playlist = titles[: self.settings.count]
        self.next(self.end)

    @step
    def end(self):
        print(f"You like {self.movie!r} ({self.genre}); from {self.stats_run}, you might like:")
        for i, title in enumerate(self.playlist, 1):
            print(f"  {i}. {title}")


if __name__ == "__main__":
    PlayListPlusFlow()
