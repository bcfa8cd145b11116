"""ament_python package crossi2p_ros: the core library ``crossi2p`` and the ROS glue ``crossi2p_ros``.

Builds with colcon in a ROS 2 workspace, and installs with pip (editable) in the project's
venv, where ROS 2 comes from PyPI wheels (README).
"""
import os
from glob import glob

from setuptools import find_packages, setup

package_name = "crossi2p_ros"
here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.normpath(os.path.join(here, "..", "..", ".."))


def _share(sub: str, pattern: str) -> list[str]:
    """Files of the repository's top-level ``sub`` folder, relative to this setup.py."""
    return [os.path.relpath(p, here) for p in sorted(glob(os.path.join(repo, sub, pattern)))]


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", _share("launch", "*.launch.py")),
        ("share/" + package_name + "/config", _share("config", "*.yaml") + _share("config", "*.rviz")),
        ("share/" + package_name + "/models", _share("models", "*.onnx") + _share("models", "*.yaml")),
    ],
    install_requires=["setuptools", "numpy", "scipy", "opencv-python-headless", "scikit-image", "cma", "pyyaml", "tqdm",
                      "matplotlib", "onnxruntime",
                      # the unfinished-MCAP reader relies on rosbags 0.11 internals (crossi2p.datasets.rosbag2)
                      "rosbags>=0.11.9,<0.12"],
    zip_safe=True,
    maintainer="crossi2p_ros maintainers",
    maintainer_email="crossi2p@example.com",
    description="Targetless online camera-LiDAR calibration publishing T_cam_lidar on tf.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "calibration_node = crossi2p_ros.node_main:main",
            "crossi2p-overlay = crossi2p.cli.overlay:main",
            "crossi2p-evaluate-bag = crossi2p_ros.evaluate_bag:main",
            "crossi2p-calibrate = crossi2p_ros.calibrate:main",
        ],
    },
)
