"""Dataset readers and writers; each produces ``crossi2p.sample.Sample`` records.

Modules (import the one you need; nothing is imported here, so ``rosbags`` is only loaded
by the rosbag2 module):

- ``kitti``: KITTI Odometry sequences (read lazily / write), single KITTI frames, ``.bin`` scans;
- ``nuscenes``: camera/LiDAR key-frame pairs from nuScenes JSON tables;
- ``rosbag2``: drives as rosbag2 bags (MCAP or sqlite3): write, read decoded messages,
  ground truth from ``/tf_static``;
- ``pcd``: PCD files (ascii, binary);
- ``opencalib``: OpenCalib lidar2camera sample folders.
"""
