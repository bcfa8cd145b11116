"""Node parameters: one declaration, typed, range-checked, and the docs table cannot drift."""
from pathlib import Path

import pytest

from crossi2p_ros.parameters import parameter_specs, parameter_table_markdown, parameters_from_flat

REPO = Path(__file__).resolve().parents[2]


def test_docs_parameter_table_matches_the_declarations():
    assert (REPO / "docs" / "parameters.md").read_text() == parameter_table_markdown(), \
        "regenerate: .venv/bin/python -m crossi2p_ros.parameters > docs/parameters.md"


def test_every_parameter_has_a_description():
    specs = parameter_specs()
    assert len(specs) > 40
    assert all(s.description for s in specs), [s.name for s in specs if not s.description]


def test_flat_ros_values_map_onto_the_typed_configs():
    p = parameters_from_flat({"mode": "refine", "pairing.slop_s": 0.02, "fusion.window_size": 30,
                              "runtime.execution_provider": "cpu", "prior_xyz": (0.1, 0.2, 0.3)})
    assert p.node.mode == "refine" and p.pairing.slop_s == 0.02
    assert p.fusion.window_size == 30 and p.runtime.execution_provider == "cpu"
    assert p.node.prior_xyz == [0.1, 0.2, 0.3]


@pytest.mark.parametrize("values, message", [
    ({"mode": "local"}, "mode"),
    ({"pairing.slop_s": 5.0}, "outside"),
    ({"fusion.windowsize": 3}, "unknown keys"),
    ({"fusion.window_size": "ten"}, "integer"),
])
def test_bad_parameters_are_refused_naming_the_parameter(values, message):
    with pytest.raises(ValueError, match=message):
        parameters_from_flat(values)
