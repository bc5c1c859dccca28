"""The runner: registry, config resolution, workdir layout, failures, resume."""

import json
import sys
from pathlib import Path

import jax
import pytest

import chainlab.runner.configs
import chainlab.runner.experiments
from chainlab import runner
from chainlab.errors import ChainlabError, ExperimentFailed, RunInterrupted

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def toy(monkeypatch):
    """Register the toy experiment of tests/fixtures for this test only."""
    monkeypatch.setattr(
        chainlab.runner.experiments,
        "__path__",
        [*chainlab.runner.experiments.__path__, str(FIXTURES / "experiments")],
    )
    monkeypatch.setattr(
        chainlab.runner.configs,
        "__path__",
        [*chainlab.runner.configs.__path__, str(FIXTURES / "configs")],
    )
    yield "toy"
    for name in list(sys.modules):
        if name.startswith(
            ("chainlab.runner.experiments.toy", "chainlab.runner.configs.toy")
        ):
            del sys.modules[name]


def test_registry_lists_toy_and_describes_it(toy):
    assert "toy" in runner.list_experiments()
    assert (
        runner.describe("toy")
        == "Toy regression used to test the runner (not shipped)."
    )


def test_unknown_experiment_suggests_close_names(toy):
    with pytest.raises(ChainlabError, match="did you mean toy"):
        runner.get_config("tyo")


def test_unknown_variant_lists_allowed(toy):
    with pytest.raises(ChainlabError, match="allowed: '', 'quick'"):
        runner.get_config("toy", "huge")


def test_overrides_parse_by_field_type(toy):
    config = runner.get_config(
        "toy",
        "quick",
        overrides={
            "steps": "7",
            "learning_rate": "1e-2",
            "fail": "no",
            "model.width": 3,
            "hidden": "(1, 2, 3)",
        },
    )
    assert config.steps == 7 and config.learning_rate == 0.01 and config.fail is False
    assert config.model.width == 3 and config.hidden == (1, 2, 3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"steps": "abc"}, "steps expects a int, got 'abc'"),
        ({"fail": "maybe"}, "fail expects a bool"),
        ({"stpes": "3"}, "unknown config key 'stpes'; valid keys: .*model.width"),
        ({"model.depth": "3"}, "unknown config key 'model.depth'"),
        ({"steps": 2.5}, "steps expects a int, got 2.5"),
    ],
)
def test_bad_overrides_are_refused(toy, overrides, message):
    with pytest.raises(ChainlabError, match=message):
        runner.get_config("toy", overrides=overrides)


def test_config_file(toy, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"steps": 5, "model": {"width": 2}}))
    config = runner.get_config("toy", config_file=path)
    assert config.steps == 5 and config.model.width == 2
    with pytest.raises(ChainlabError, match="does not exist"):
        runner.get_config("toy", config_file=tmp_path / "missing.json")
    path.write_text("{not json")
    with pytest.raises(ChainlabError, match="not valid JSON"):
        runner.get_config("toy", config_file=path)


def test_run_writes_the_workdir_layout(toy, tmp_path):
    workdir = tmp_path / "run"
    results = runner.run("toy", variant="quick", workdir=workdir)
    names = {p.name for p in workdir.iterdir()}
    assert {
        "config.json",
        "versions.json",
        "metrics.jsonl",
        "results.json",
        "report.md",
        "loss.png",
        "checkpoints",
    } <= names
    saved = json.loads((workdir / "results.json").read_text())
    assert saved == results and saved["nested"] == {"a": 1} and len(saved["w"]) == 3
    versions = json.loads((workdir / "versions.json").read_text())
    assert {
        "python",
        "jax",
        "jaxlib",
        "flax",
        "optax",
        "backend",
        "device_count",
        "seed",
    } <= set(versions)
    report = (workdir / "report.md").read_text()
    assert "| final_loss |" in report and "| pass |" in report
    assert "![training loss](loss.png)" in report and "A toy note." in report
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    train = [r["step"] for r in records if r["split"] == "train"]
    assert train == list(range(5, 41, 5))
    assert [r["step"] for r in records if r["split"] == "eval"] == [40]


def test_non_empty_workdir_is_never_overwritten(toy, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "precious.txt").write_text("keep me")
    with pytest.raises(ChainlabError, match="not empty; nothing was overwritten"):
        runner.run("toy", variant="quick", workdir=workdir)
    with pytest.raises(ChainlabError, match="Use resume=True to continue that run"):
        runner.run("toy", variant="quick", workdir=workdir)
    assert (workdir / "precious.txt").read_text() == "keep me"
    assert [p.name for p in workdir.iterdir()] == ["precious.txt"]


def test_crash_keeps_partial_output_and_says_where(toy, tmp_path):
    workdir = tmp_path / "run"
    with pytest.raises(ExperimentFailed, match=f"partial output kept in {workdir}"):
        runner.run("toy", variant="quick", workdir=workdir, overrides={"fail": True})
    assert (workdir / "metrics.jsonl").exists() and (workdir / "config.json").exists()
    assert "RuntimeError: toy failure" in (workdir / "error.txt").read_text()
    assert "**FAILED:**" in (workdir / "report.md").read_text()


def test_nan_guard_names_the_step_and_keeps_last_good_checkpoint(toy, tmp_path):
    workdir = tmp_path / "run"
    with pytest.raises(
        ExperimentFailed, match=r"loss became nan at step \d+; last good"
    ):
        runner.run(
            "toy", variant="quick", workdir=workdir, overrides={"diverge_at_loss": 1e-6}
        )
    kept = sorted(int(p.name) for p in (workdir / "checkpoints" / "train").iterdir())
    assert kept, "the last good checkpoint must survive the divergence"


def _metric_keys(workdir: Path) -> list[tuple]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [(r["run"], r["split"], r["step"]) for r in map(json.loads, lines)]


def test_resume_reproduces_an_uninterrupted_run(toy, tmp_path):
    full = runner.run("toy", workdir=tmp_path / "full")
    full_keys = _metric_keys(tmp_path / "full")
    partial = tmp_path / "partial"
    with pytest.raises(RunInterrupted, match=r"workdir=.*partial', resume=True\)"):
        runner.run("toy", workdir=partial, overrides={"crash_at_step": 35})
    assert (partial / "checkpoints" / "train" / "30").is_dir()
    assert ("train", "train", 35) in _metric_keys(partial)  # logged, not checkpointed
    resumed = runner.run("toy", workdir=partial, resume=True)
    assert resumed["w"] == full["w"]
    assert resumed["final_loss"] == full["final_loss"]
    keys = _metric_keys(partial)
    assert len(keys) == len(set(keys))
    # The interrupted run evaluates every 35 steps, the full one at the end only.
    assert {k for k in keys if k[1] != "eval"} == {
        k for k in full_keys if k[1] != "eval"
    }
    assert "resumed from its last checkpoints" in (partial / "report.md").read_text()


def test_resume_skips_finished_training(toy, tmp_path):
    """The last step is checkpointed: resuming a finished run trains nothing."""
    workdir = tmp_path / "run"
    first = runner.run("toy", workdir=workdir, overrides={"checkpoint_every": 7})
    assert sorted(p.name for p in (workdir / "checkpoints" / "train").iterdir()) == [
        "56",
        "60",
    ]
    lines = (workdir / "metrics.jsonl").read_text()
    assert runner.run("toy", workdir=workdir, resume=True) == first
    assert (workdir / "metrics.jsonl").read_text() == lines


def test_resume_refuses_a_different_config(toy, tmp_path):
    runner.run("toy", variant="quick", workdir=tmp_path / "run")
    with pytest.raises(ChainlabError, match="different config"):
        runner.run("toy", workdir=tmp_path / "run", resume=True, overrides={"steps": 3})
    with pytest.raises(ChainlabError, match="holds no run"):
        runner.run("toy", workdir=tmp_path / "nothing", resume=True)


def test_reproduce_gathers_reports_and_survives_a_failure(toy, tmp_path):
    outcome = runner.reproduce(
        variant="quick", only=["toy_broken", "toy"], workdir=tmp_path / "r"
    )
    assert not outcome.ok
    assert outcome.experiments["toy"]["status"] == "ok"
    assert outcome.experiments["toy_broken"]["status"] == "failed"
    report = (tmp_path / "r" / "REPORT.md").read_text()
    assert "| [toy](#toy) | ok |" in report and "](toy/loss.png)" in report
    assert "| [toy_broken](#toy_broken) | failed |" in report


def test_tensorboard_mirrors_the_metrics(toy, tmp_path):
    workdir = tmp_path / "run"
    runner.run("toy", variant="quick", workdir=workdir, tensorboard=True)
    (events,) = (workdir / "tensorboard").glob("events.out.tfevents.*")
    written = events.read_bytes()
    for tag in (b"train/train/loss", b"train/eval/w_norm", b"train/checkpoint/seconds"):
        assert tag in written


def test_run_leaves_the_jax_configuration_as_it_found_it(toy, tmp_path):
    watched = (
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_enable_x64",
        "jax_disable_most_optimizations",
    )
    suite_cache = jax.config.values["jax_compilation_cache_dir"]
    jax.config.update("jax_compilation_cache_dir", None)  # as in a fresh notebook
    try:
        before = {name: jax.config.values[name] for name in watched}
        runner.run("toy", variant="quick", workdir=tmp_path / "run")
        assert {name: jax.config.values[name] for name in watched} == before
    finally:
        jax.config.update("jax_compilation_cache_dir", suite_cache)
