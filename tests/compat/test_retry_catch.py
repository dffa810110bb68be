"""@retry and @catch as Metaflow runs them locally: retries at once, @catch keeps the task's work."""

import time

FLOW = """
from metaflow import FlowSpec, step, retry, catch, current


class RetryCatchFlow(FlowSpec):
    @retry(times=2)                   # Metaflow's local runtime retries at once
    @step
    def start(self):
        self.tries = current.retry_count
        if current.retry_count < 2:
            raise ValueError("flaky %d" % current.retry_count)
        self.next(self.risky)

    @catch(var="problem", print_exception=False)
    @step
    def risky(self):
        self.before = "kept"
        raise KeyError("always")
        self.next(self.fine)

    @catch(var="nothing")
    @step
    def fine(self):
        self.next(self.end)

    @step
    def end(self):
        p = self.problem
        self.summary = [p.type, p.exception, "KeyError" in p.stacktrace, "always" in str(p)]
        self.wrapper = type(p).__name__


if __name__ == "__main__":
    RetryCatchFlow()
"""


def test_retry_and_catch(engine):
    path = engine.write("retry_catch_flow.py", FLOW)
    started = time.monotonic()
    engine.run(path, "run")
    assert time.monotonic() - started < 100  # nothing waits 2 minutes between retries
    out = engine.client("""
        from metaflow import Flow, namespace
        from metaflow.exception import MetaflowExceptionWrapper
        namespace(None)
        run = Flow("RetryCatchFlow").latest_run
        start = run["start"].task
        emit([start.data.tries, start.current_attempt])
        risky = run["risky"].task
        emit([risky.data.before, risky.current_attempt])
        emit(isinstance(risky.data.problem, MetaflowExceptionWrapper))
        emit(run["fine"].task.data.nothing)
        emit(run.data.summary)
        """)
    assert out == [
        [2, 2],
        ["kept", 0],
        True,
        None,
        ["builtins.KeyError", "'always'", True, True],
    ]


def test_retry_options_as_text_and_zero_wait(engine):
    path = engine.write("retry_text_flow.py", """
        from metaflow import FlowSpec, step, retry, current

        class RetryTextFlow(FlowSpec):
            @retry(times="1", minutes_between_retries="0")
            @step
            def start(self):
                if current.retry_count == 0:
                    raise RuntimeError("first try fails")
                self.next(self.end)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            RetryTextFlow()
        """)
    engine.run(path, "run")
    assert engine.client("""
        from metaflow import Flow, namespace
        namespace(None)
        emit(Flow("RetryTextFlow").latest_run["start"].task.current_attempt)
        """) == [1]


def test_explicit_wait_between_retries_is_kept():
    from reelflow.flows._decorators import parse_with_spec, retry_delay

    assert retry_delay(parse_with_spec("retry")) == 0.0  # Metaflow's default: retry at once locally
    assert retry_delay(parse_with_spec("retry:minutes_between_retries=0")) == 0.0
    assert retry_delay(parse_with_spec("retry:minutes_between_retries=2")) == 120.0  # asked for: honoured


def test_failed_attempts_keep_their_exception_and_data(engine):
    path = engine.write("fail_flow.py", """
        from metaflow import FlowSpec, step, retry, current

        class FailFlow(FlowSpec):
            @retry(times=1)
            @step
            def start(self):
                self.tried = current.retry_count
                raise ValueError("boom %d" % current.retry_count)
                self.next(self.end)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            FailFlow()
        """)
    assert engine.run(path, "run", check=False).returncode != 0
    out = engine.client("""
        from metaflow import Flow, Task, namespace
        namespace(None)
        t = Flow("FailFlow").latest_run["start"].task
        e = t.exception
        emit([e.type, e.exception, "boom 1" in e.stacktrace, t.current_attempt, t.successful, t.data.tried])
        first = Task(t.pathspec, attempt=0)
        emit([first.current_attempt, first.exception.exception, first.data.tried])
        """)
    assert out == [["builtins.ValueError", "boom 1", True, 1, False, 1], [0, "boom 0", 0]]
