"""Experiments refuse settings they cannot run, before any work, in one line."""

import pytest

from chainlab import runner
from chainlab.errors import ExperimentFailed


@pytest.mark.parametrize(
    ("experiment", "key", "value", "match"),
    [
        ("realnvp_moons", "activation", "sigmoid", "activation must be one of"),
        ("realnvp_moons", "schedule", "linear", "schedule must be one of"),
        ("realnvp_moons", "steps", 5000, "at most 3000 steps"),
        ("realnvp_moons", "warmup_steps", 100, "warmup_steps must be in"),
        ("realnvp_moons", "flows", ("affine", "glow"), "flows must be one of"),
        ("realnvp_moons", "flows", ("spline",), "flows must name 'affine'"),
        ("realnvp_digits", "coupling_scale", "exp", "coupling_scale must be one of"),
        ("realnvp_digits", "transformer", "flow", "transformer must be one of"),
        (
            "jacobian_regularization",
            "architecture",
            "resnet",
            "architecture must be 'mlp' or 'cnn'",
        ),
    ],
)
def test_bad_setting_is_refused(tmp_path, experiment, key, value, match):
    with pytest.raises(ExperimentFailed, match=match):
        runner.run(
            experiment,
            variant="quick",
            overrides={key: value},
            workdir=tmp_path / "run",
        )
