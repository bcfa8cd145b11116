"""crossi2p core: geometry, camera models, preprocessing, fusion, metrics, calibration I/O,
dataset readers and the onnxruntime runtime. Plain Python + numpy/scipy/OpenCV: no rclpy, no
torch, so it is usable by the ROS node, the bag evaluator and the training package alike."""

__version__ = "0.1.0"
