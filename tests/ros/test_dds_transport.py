"""The venv's ROS 2 (PyPI wheels + generated tf2_msgs) carries the product's message types over
DDS: Image, PointCloud2 and a latched (TRANSIENT_LOCAL) TFMessage on /tf_static."""
from __future__ import annotations

import numpy as np
import rclpy
from geometry_msgs.msg import TransformStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2, PointField
from tf2_msgs.msg import TFMessage

from .conftest import spin_until

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     reliability=ReliabilityPolicy.RELIABLE)


def _image(rng) -> Image:
    pixels = rng.integers(0, 255, size=(12, 16, 3), dtype=np.uint8)
    msg = Image(height=12, width=16, encoding="rgb8", is_bigendian=0, step=48)
    msg.data = pixels.tobytes()
    return msg


def _cloud(rng) -> PointCloud2:
    xyzi = rng.normal(size=(100, 4)).astype(np.float32)
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, n in enumerate("x y z intensity".split())]
    return PointCloud2(height=1, width=100, fields=fields, is_bigendian=False, point_step=16,
                       row_step=1600, data=xyzi.tobytes(), is_dense=True)


def test_image_and_pointcloud2_round_trip_over_dds(ros_context):
    rng = np.random.default_rng(0)
    image, cloud = _image(rng), _cloud(rng)
    pub_node = rclpy_node("dds_pub", ros_context)
    sub_node = rclpy_node("dds_sub", ros_context)
    got: dict[str, object] = {}
    sub_node.create_subscription(Image, "/test/image", lambda m: got.setdefault("image", m), 10)
    sub_node.create_subscription(PointCloud2, "/test/points", lambda m: got.setdefault("cloud", m), 10)
    pub_image = pub_node.create_publisher(Image, "/test/image", 10)
    pub_cloud = pub_node.create_publisher(PointCloud2, "/test/points", 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(pub_node)
    executor.add_node(sub_node)

    def publish_and_check():
        pub_image.publish(image)
        pub_cloud.publish(cloud)
        return len(got) == 2

    assert spin_until(executor, publish_and_check), f"received only {sorted(got)}"
    assert bytes(got["image"].data) == bytes(image.data)
    assert got["image"].encoding == "rgb8"
    assert bytes(got["cloud"].data) == bytes(cloud.data)
    assert [f.name for f in got["cloud"].fields] == ["x", "y", "z", "intensity"]
    executor.shutdown()


def test_latched_tf_static_reaches_a_late_subscriber(ros_context):
    pub_node = rclpy_node("tf_pub", ros_context)
    tf = TransformStamped()
    tf.header.frame_id = "lidar"
    tf.child_frame_id = "camera_optical"
    tf.transform.translation.x = 0.27
    tf.transform.rotation.w = 1.0
    pub = pub_node.create_publisher(TFMessage, "/tf_static", LATCHED)
    pub.publish(TFMessage(transforms=[tf]))

    # The subscriber only appears after the message was published.
    sub_node = rclpy_node("tf_sub", ros_context)
    got = []
    sub_node.create_subscription(TFMessage, "/tf_static", got.append, LATCHED)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(pub_node)
    executor.add_node(sub_node)
    assert spin_until(executor, lambda: bool(got))
    received = got[0].transforms[0]
    assert (received.header.frame_id, received.child_frame_id) == ("lidar", "camera_optical")
    assert abs(received.transform.translation.x - 0.27) < 1e-12
    executor.shutdown()


def rclpy_node(name: str, context):
    return rclpy.create_node(name, context=context)
