"""Launch files and parameter YAMLs, checked as strongly as possible without launch_ros.

launch/launch_ros are not installable beside the PyPI ROS 2 wheels, so these tests parse the
launch files (syntax, declared arguments, the node they start, the files they reference) and
load every config YAML through the node's own parameter declarations. On a ROS 2 install,
``ros2 launch crossi2p_ros calibration.launch.py --show-args`` is the live check (README).
"""
import ast
from pathlib import Path

import pytest
import yaml

from crossi2p_ros.parameters import parameter_specs, parameters_from_flat

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
CONFIG_FILES = sorted((REPO / "config").glob("*.yaml"))


def launch_calls(path: Path, func: str) -> list[ast.Call]:
    tree = ast.parse(path.read_text(), str(path))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == func]


def declared_arguments(path: Path) -> set[str]:
    return {c.args[0].value for c in launch_calls(path, "DeclareLaunchArgument")}


def used_arguments(path: Path) -> set[str]:
    return {c.args[0].value for c in launch_calls(path, "LaunchConfiguration")}


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def test_there_are_live_and_bag_replay_launch_files():
    assert {p.name for p in LAUNCH_FILES} == {"calibration.launch.py", "bag_replay.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_defines_generate_launch_description_and_uses_only_declared_arguments(path):
    tree = ast.parse(path.read_text(), str(path))
    assert "generate_launch_description" in {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
    assert used_arguments(path) <= declared_arguments(path)
    compile(path.read_text(), str(path), "exec")


def test_live_launch_starts_the_installed_console_script_with_known_parameters():
    path = REPO / "launch" / "calibration.launch.py"
    nodes = [c for c in launch_calls(path, "Node")
             if any(k.arg == "executable" and k.value.value == "calibration_node" for k in c.keywords)]
    assert len(nodes) == 1
    setup_cfg = (REPO / "ros2_ws/src/crossi2p_ros/setup.py").read_text()
    assert "calibration_node = crossi2p_ros.node_main:main" in setup_cfg
    params = next(k.value for k in nodes[0].keywords if k.arg == "parameters")
    overrides = next(e for e in params.elts if isinstance(e, ast.Dict))
    known = {s.name for s in parameter_specs()} | {"use_sim_time"}
    assert {k.value for k in overrides.keys} <= known
    # The files it names are installed by setup.py into share/crossi2p_ros/config.
    assert (REPO / "config" / "default.yaml").is_file() and (REPO / "config" / "crossi2p.rviz").is_file()


def test_bag_replay_plays_with_clock_and_sim_time_and_includes_the_live_launch():
    from crossi2p_ros.bag_player import DEFAULT_EXCLUDED

    text = (REPO / "launch" / "bag_replay.launch.py").read_text()
    # the package's own player: /clock before each message, the bag's tf left out on every distro
    assert '"crossi2p_ros.bag_player"' in text and '"use_sim_time": "true"' in text
    assert set(DEFAULT_EXCLUDED) == {"/tf_static", "/tf"}
    assert '"calibration.launch.py"' in text
    assert {"bag", "rate", "config"} <= declared_arguments(REPO / "launch" / "bag_replay.launch.py")
    # the player publishes reliably: the replay subscribes reliably too (best effort loses the
    # images that arrive with a cloud, the synchronised pairs the refinement keeps)
    qos = next(c for c in launch_calls(REPO / "launch" / "bag_replay.launch.py", "DeclareLaunchArgument")
               if c.args[0].value == "qos")
    assert next(k.value.value for k in qos.keywords if k.arg == "default_value") == "reliable"
    assert '"qos": LaunchConfiguration("qos")' in text


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_config_yaml_holds_only_known_parameters_of_the_right_type(path):
    doc = yaml.safe_load(path.read_text())
    assert list(doc) == ["/**"], "parameter files use the /** wildcard node name"
    values = flatten(doc["/**"]["ros__parameters"])
    params = parameters_from_flat(values)  # raises on unknown keys, wrong types, out-of-range
    assert params.node.mode in ("global", "refine")


def test_rviz_config_shows_the_overlay_topic():
    assert "/crossi2p_calibration/overlay" in (REPO / "config" / "crossi2p.rviz").read_text()
