"""sgdfuse_ros: SAM-guided diffusion infrared-visible fusion for ROS 2 robots."""

__version__ = "0.1.0"
