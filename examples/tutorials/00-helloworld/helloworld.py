"""The smallest flow: three steps in a line.

    python helloworld.py run
    python helloworld.py show
"""

from reelflow import FlowSpec, step


class HelloFlow(FlowSpec):
    """A flow that says hello, then goodbye."""

    @step
    def start(self):
        """Every flow starts here."""
        print("HelloFlow is starting.")
        self.next(self.hello)

    @step
    def hello(self):
        """Anything assigned to self is kept with the run."""
        self.message = "Hi there, from reelflow!"
        print(self.message)
        self.next(self.end)

    @step
    def end(self):
        """Every flow ends here."""
        print("HelloFlow is all done.")


if __name__ == "__main__":
    HelloFlow()
