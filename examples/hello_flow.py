"""A first reelflow flow: branches, a foreach, joins and artifacts.

    python examples/hello_flow.py run --titles '["Dark", "Ozark", "Narcos"]'
    python examples/hello_flow.py show
"""

from reelflow import FlowSpec, JSONType, Parameter, current, step


class HelloFlow(FlowSpec):
    """Score a few titles in parallel and pick the best one."""

    titles = Parameter("titles", type=JSONType, default='["Stranger Things", "The Crown", "Dark"]',
                       help="JSON list of titles to score")
    boost = Parameter("boost", default=1.0, help="multiplier applied to every score")

    @step
    def start(self):
        """Fan out over the titles."""
        print(f"scoring {len(self.titles)} titles in run {current.run_id}")
        self.next(self.score, foreach="titles")

    @step
    def score(self):
        """One task per title (self.input is the title)."""
        self.title = self.input
        self.value = len(set(self.title.lower()) - {" "}) * self.boost
        self.next(self.pick)

    @step
    def pick(self, inputs):
        """Join the foreach: keep the best title."""
        best = max(inputs, key=lambda i: i.value)
        self.best, self.best_score = best.title, best.value
        self.scores = {i.title: i.value for i in inputs}
        self.next(self.end)

    @step
    def end(self):
        print(f"best title: {self.best} ({self.best_score:.1f})")


if __name__ == "__main__":
    HelloFlow()
