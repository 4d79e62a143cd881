"""ROS 2 side of the package: the fusion node and its helpers.

Only modules in this package import rclpy, and only where they need it (node, qos, replay,
client): the codec, sync, registration, parameters and launch_args modules are plain Python so
the offline bag tool and the unit tests use them without ROS.
"""
