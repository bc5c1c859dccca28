"""Progress output: silent for short loops, one plain line now and then in a log."""

import time

from chainlab import progress as progress_module


def _loop(seconds_per_step: float, steps: int = 6) -> None:
    bar = progress_module.progress(total=steps, desc="demo")
    for _ in range(steps):
        time.sleep(seconds_per_step)
        bar.update()
    bar.set_postfix(loss="0.5", refresh=False)
    bar.close()


def test_log_gets_periodic_lines_without_redraws(monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "LOG_EVERY_SECONDS", 0.05)
    _loop(0.03)
    lines = capsys.readouterr().err.splitlines()
    assert 1 <= len(lines) <= 6
    assert all(line.startswith("demo:") and "\r" not in line for line in lines)


def test_short_loops_print_nothing_to_a_log(capsys):
    _loop(0.0)
    assert capsys.readouterr().err == ""
