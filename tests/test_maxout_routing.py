"""maxout_routing: routing helpers on a tiny network, and the quick run end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chainlab.runner
from chainlab.runner.experiments.maxout_routing import (
    MaxoutNet,
    analyse,
    routing_forward,
    win_fractions,
)

PIECES = 3


@pytest.fixture
def tiny(key):
    model = MaxoutNet((5, 4), PIECES)
    kx, ky, kp = jax.random.split(key, 3)
    x = jax.random.uniform(kx, (6, 64))
    y = jax.random.randint(ky, (6,), 0, 10)
    params = model.init(kp, x)
    # Non-zero biases, so the (zero-bias) init ties at blank inputs do not interfere.
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(kp, a.shape), params)
    return model, params, x, y


def test_routing_forward_matches_the_flax_model(tiny):
    model, params, x, _ = tiny
    logits, pieces, winners = routing_forward(params, x)
    np.testing.assert_allclose(logits, model.apply(params, x), rtol=1e-6, atol=1e-6)
    assert [z.shape for z in pieces] == [(6, PIECES, 5), (6, PIECES, 4)]
    assert [w.shape for w in winners] == [(6, 5), (6, 4)]
    shares = win_fractions(params, x)
    np.testing.assert_allclose([jnp.sum(s, axis=0) for s in shares][0], 1.0)


def test_analysis_counts_one_piece_per_unit(tiny):
    _, params, x, y = tiny
    stats = analyse(params, x, y)
    assert float(stats["nonwinner_grad_max_abs"]) == 0.0
    np.testing.assert_array_equal(stats["nonzero_piece_grads"], [6 * 5, 6 * 4])
    assert int(stats["pieces_with_grad_per_unit_min"]) == 1
    assert int(stats["pieces_with_grad_per_unit_max"]) == 1
    assert int(stats["tie_units"]) == 0  # random parameters: no exact ties


def test_analysis_sees_the_tie_split_by_jnp_max(tiny):
    _, params, _, y = tiny
    layer = params["params"]["maxout_0"]
    tied = {
        "params": {
            **params["params"],
            "maxout_0": {  # all pieces identical: every unit of layer 0 is a tie
                "kernel": jnp.broadcast_to(layer["kernel"][:1], layer["kernel"].shape),
                "bias": jnp.broadcast_to(layer["bias"][:1], layer["bias"].shape),
            },
        }
    }
    x = jnp.ones((6, 64))
    stats = analyse(tied, x, y)
    assert int(stats["tie_units"]) == 6 * 5
    assert int(stats["pieces_tied_max"]) == PIECES
    assert int(stats["pieces_with_grad_at_tie_max"]) == 1
    assert bool(stats["tie_grad_all_to_piece0"])
    assert float(stats["jnp_max_piece0_share"]) == pytest.approx(1 / PIECES)
    assert float(stats["total_grad_max_abs_diff"]) < 1e-6


@pytest.mark.slow
def test_maxout_routing_quick(tmp_path):
    returned = chainlab.runner.run(
        "maxout_routing", variant="quick", workdir=tmp_path / "run"
    )
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results == returned
    assert results["nonwinner_grad_max_abs"] == 0.0
    assert results["nonzero_piece_grad_fraction"] == [1 / PIECES]
    assert results["tie_units"] > 0
    assert results["tie_pieces_with_grad_max"] == 1
    assert results["tie_grad_all_to_lowest_index"] is True
    assert results["jnp_max_tie_share_piece0"] == pytest.approx(0.5)
    assert results["blank_input_pieces_with_grad"] == 1
    assert results["test_accuracy"] > 0.5  # quick run: far above chance (0.1)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| nonwinner_grad_max_abs | 0.0 | exactly 0 | issue 3 | pass |" in report
    assert (tmp_path / "run" / "piece_wins.png").stat().st_size > 0
    records = [
        json.loads(line)
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert {r["step"] for r in records if r.get("split") == "eval"} >= {0, 150}
