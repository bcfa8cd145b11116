"""Calibration on a recorded rosbag2, replayed with /clock: ros2 launch crossi2p_ros bag_replay.launch.py bag:=PATH

Plays the bag with /clock and runs the calibration node with use_sim_time, so stamps, pairing and
tf behave as on the vehicle. The player is the package's own (``python -m crossi2p_ros.bag_player``:
rosbags, MCAP or sqlite3, /clock before each message, the bag's /tf_static and /tf left out so that
its ground truth cannot be taken for the estimate): ``ros2 bag play``'s topic exclusion differs
between distributions (Humble has ``-x REGEX`` only, Jazzy ``--exclude-topics``). For an offline
figure without DDS use ``crossi2p-evaluate-bag`` instead.

Arguments: bag (required), rate, config, model_card, mode, image_topic, camera_info_topic,
points_topic, compressed_image, node_name, qos (default ``reliable`` here: the player publishes reliably, and a
best-effort subscription loses about one image in four that arrive with a cloud, exactly the
synchronised pairs the refinement keeps; docs/troubleshooting.md).
"""
import os
import sys

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration


def generate_launch_description():
    share = get_package_share_directory("crossi2p_ros")
    args = [
        DeclareLaunchArgument("bag", description="rosbag2 folder (MCAP or sqlite3)"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
        DeclareLaunchArgument("config", default_value=os.path.join(share, "config", "default.yaml"),
                              description="parameter YAML"),
        DeclareLaunchArgument("model_card", default_value="", description="model card YAML (empty: shipped model)"),
        DeclareLaunchArgument("mode", default_value="global", description="global or refine"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw", description="camera image topic"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info", description="CameraInfo topic"),
        DeclareLaunchArgument("points_topic", default_value="/lidar/points", description="PointCloud2 topic"),
        DeclareLaunchArgument("compressed_image", default_value="false",
                              description="image_topic carries sensor_msgs/CompressedImage"),
        DeclareLaunchArgument("qos", default_value="reliable",
                              description="QoS of the node's sensor subscriptions (the player publishes reliably)"),
        DeclareLaunchArgument("node_name", default_value="crossi2p_calibration",
                              description="the calibration node's name (calibration.launch.py)"),
    ]
    calibration = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "calibration.launch.py")),
        launch_arguments={
            "use_sim_time": "true",
            "config": LaunchConfiguration("config"),
            "model_card": LaunchConfiguration("model_card"),
            "mode": LaunchConfiguration("mode"),
            "image_topic": LaunchConfiguration("image_topic"),
            "camera_info_topic": LaunchConfiguration("camera_info_topic"),
            "points_topic": LaunchConfiguration("points_topic"),
            "compressed_image": LaunchConfiguration("compressed_image"),
            "qos": LaunchConfiguration("qos"),
            "node_name": LaunchConfiguration("node_name"),
        }.items(),
    )
    # The bag's own /tf_static (ground truth) is not replayed (the player's default), so it cannot be
    # mistaken for the estimate; /clock goes out before every message (the node runs on sim time).
    play = ExecuteProcess(
        cmd=[sys.executable, "-m", "crossi2p_ros.bag_player", LaunchConfiguration("bag"), "--rate",
             LaunchConfiguration("rate")],
        output="screen",
    )
    return LaunchDescription(args + [calibration, play])
