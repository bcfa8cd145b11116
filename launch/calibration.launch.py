"""Live camera-LiDAR calibration: ros2 launch crossi2p_ros calibration.launch.py

Arguments (ros2 launch crossi2p_ros calibration.launch.py --show-args):
  image_topic, camera_info_topic, points_topic, compressed_image, camera_frame, lidar_frame,
  mode (global|refine), config (parameter YAML), model_card, rviz (true: RViz with the overlay),
  node_name (default crossi2p_calibration; one per camera on a multi-camera rig: two nodes of one
  name share their parameter services and ~/ topics).
Topic and frame arguments override the parameter file.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    share = get_package_share_directory("crossi2p_ros")
    args = [
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw", description="camera image topic"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info", description="CameraInfo topic"),
        DeclareLaunchArgument("points_topic", default_value="/lidar/points", description="PointCloud2 topic"),
        DeclareLaunchArgument("compressed_image", default_value="false",
                              description="image_topic carries sensor_msgs/CompressedImage"),
        DeclareLaunchArgument("qos", default_value="sensor_data",
                              description="QoS of the sensor subscriptions: sensor_data (best effort) or reliable"),
        DeclareLaunchArgument("camera_frame", default_value="",
                              description="camera optical frame on tf (empty: the first image's header frame_id)"),
        DeclareLaunchArgument("lidar_frame", default_value="", description="LiDAR frame on tf (empty: the first cloud's header frame_id; clouds in another frame go through /tf_static)"),
        DeclareLaunchArgument("mode", default_value="global", description="global (no prior) or refine"),
        DeclareLaunchArgument("config", default_value=os.path.join(share, "config", "default.yaml"),
                              description="parameter YAML"),
        DeclareLaunchArgument("model_card", default_value="", description="model card YAML (empty: shipped model)"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz showing the overlay image"),
        DeclareLaunchArgument("node_name", default_value="crossi2p_calibration",
                              description="the node's name (one per camera: nodes of one name share ~/pose and "
                                          "their parameter services; rviz:=true shows the default name's overlay)"),
    ]
    calibration = Node(
        package="crossi2p_ros",
        executable="calibration_node",
        name=LaunchConfiguration("node_name"),
        output="screen",
        parameters=[
            LaunchConfiguration("config"),
            {
                "image_topic": LaunchConfiguration("image_topic"),
                "camera_info_topic": LaunchConfiguration("camera_info_topic"),
                "points_topic": LaunchConfiguration("points_topic"),
                "compressed_image": ParameterValue(LaunchConfiguration("compressed_image"), value_type=bool),
                "qos": LaunchConfiguration("qos"),
                "camera_frame": LaunchConfiguration("camera_frame"),
                "lidar_frame": LaunchConfiguration("lidar_frame"),
                "mode": LaunchConfiguration("mode"),
                "model_card": LaunchConfiguration("model_card"),
                "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
            },
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        arguments=["-d", os.path.join(share, "config", "crossi2p.rviz")],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription(args + [calibration, rviz])
