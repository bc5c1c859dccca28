"""A non-editable install must ship every subpackage, experiment and config."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_for_the_wheel():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
        "setuptools"
    ]
    listed = set(setuptools["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "chainlab").rglob("__init__.py")
    }
    mapped = {"chainlab.runner.experiments", "chainlab.runner.configs"}
    assert found | mapped == listed
    assert setuptools["package-dir"]["chainlab.runner.experiments"] == "experiments"
    assert setuptools["package-dir"]["chainlab.runner.configs"] == "configs"


def test_the_wheel_ships_the_typing_marker():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
        "setuptools"
    ]
    assert "py.typed" in setuptools["package-data"]["chainlab"]
    assert (ROOT / "chainlab" / "py.typed").is_file()
