import io

from orchestrator.engine.events import (
    MetricReported,
    RunCreated,
    RunStateChanged,
    SweepFinished,
    SweepStarted,
)
from orchestrator.engine.states import RunState, SweepState
from orchestrator.reporting import Objective, Reporter, format_duration


def feed(reporter: Reporter) -> None:
    s, t = "s", 0.0
    reporter.handle(SweepStarted(sweep_id=s, ts=t, seq=1, name="x", total=3, concurrency=2))
    for i in range(2):
        params = {"lr": 0.1 * (i + 1)}
        reporter.handle(
            RunCreated(
                sweep_id=s, ts=t, seq=2 + i, run_id=f"r{i}", index=i, params=params, argv=["t"]
            )
        )
        reporter.handle(
            RunStateChanged(
                sweep_id=s,
                ts=t,
                seq=10 + i,
                run_id=f"r{i}",
                index=i,
                previous=RunState.STARTING,
                state=RunState.RUNNING,
            )
        )
    reporter.handle(
        MetricReported(sweep_id=s, ts=t, seq=20, run_id="r0", index=0, step=1, values={"loss": 0.5})
    )
    reporter.handle(
        RunStateChanged(
            sweep_id=s,
            ts=t,
            seq=21,
            run_id="r1",
            index=1,
            previous=RunState.RUNNING,
            state=RunState.FAILED,
            reason="exit code 2",
            exit_code=2,
            stderr_tail=["Traceback", "ValueError: bad"],
        )
    )


def test_plain_lines_per_transition_with_stderr_tail() -> None:
    out = io.StringIO()
    reporter = Reporter(out, live=False, keys=["lr"])
    feed(reporter)
    lines = out.getvalue().splitlines()
    assert lines[0] == "#0    running   lr=0.1"
    assert lines[2].startswith("#1    failed    (exit code 2)")
    assert lines[3:] == ["      | Traceback", "      | ValueError: bad"]
    assert "\x1b" not in out.getvalue()


def test_live_status_line_has_counts_metrics_and_elapsed() -> None:
    out = io.StringIO()
    reporter = Reporter(out, live=True, keys=["lr"])
    feed(reporter)
    reporter.status()
    status = reporter.status_line()
    assert "1/3 done" in status
    assert "1 running" in status and "1 failed" in status
    assert "1 pending" in status
    assert "elapsed" in status and "ETA" in status
    assert "#0 loss=0.5" in status
    # Every line went out with the status line drawn again after it (rich's live region).
    written = out.getvalue()
    assert written.index("#1    failed") < written.rindex("1/3 done")
    reporter.handle(
        SweepFinished(seq=99, sweep_id="s", ts=0.0, state=SweepState.FAILED, reason=None, counts={})
    )
    reporter.close()
    assert "pending" not in reporter.status_line()
    assert out.getvalue().endswith("\n")


def test_format_duration() -> None:
    assert format_duration(None) == "-"
    assert format_duration(1.25) == "1.2s"
    assert format_duration(75) == "1:15"
    assert format_duration(3725) == "1:02:05"


def test_an_adaptive_run_says_where_it_sits_and_the_best_so_far_is_on_the_status_line() -> None:
    out = io.StringIO()
    reporter = Reporter(out, live=False, keys=["x"], objective=Objective("loss", "minimize"))
    s, t = "s", 0.0
    reporter.handle(SweepStarted(sweep_id=s, ts=t, seq=1, name="x", total=4, concurrency=2))
    for i, loss in enumerate([0.5, 0.2, 0.9]):
        run = f"r{i}"
        place = {"bracket": 1, "rung": i // 2}
        reporter.handle(
            RunCreated(
                sweep_id=s, ts=t, seq=2, run_id=run, index=i, params={"x": i}, argv=[], place=place
            )
        )
        for previous, state in [
            (RunState.STARTING, RunState.RUNNING),
            (RunState.RUNNING, RunState.SUCCEEDED),
        ]:
            if state is RunState.SUCCEEDED:
                reporter.handle(
                    MetricReported(
                        sweep_id=s, ts=t, seq=3, run_id=run, index=i, step=1, values={"loss": loss}
                    )
                )
            reporter.handle(
                RunStateChanged(
                    sweep_id=s, ts=t, seq=4, run_id=run, index=i, previous=previous, state=state
                )
            )
    assert out.getvalue().splitlines()[0] == "#0    running   (bracket 1 rung 0) x=0"
    assert "best loss=0.2 (#1)" in reporter.status_line()
