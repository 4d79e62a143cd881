"""ROS-free input/output: Image codec, frame-pair synchronizer, registration, rosbag2 files.

Nothing here imports rclpy, so the node, the offline tools and the tests share one
implementation of decoding, pairing and bag reading/writing.
"""
