"""launch_testing description of the installed fusion.launch.py: run with the `launch_test`
command from a sourced workspace (test_launch.py does, with a private ROS_DOMAIN_ID).

Not named test_*.py: pytest itself must not collect it (launch_testing's pytest plugin is off,
see setup.cfg). The active test publishes camera pairs and checks /fused/image; after launch
has shut the node down (its SIGINT), the post-shutdown tests check every process exited 0 with
one shutdown line and no traceback.
"""

from __future__ import annotations

import os
import threading
import time
import unittest
from pathlib import Path

import launch_testing
import launch_testing.actions
import launch_testing.asserts
import rclpy
from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch_helpers import stamped_pair  # test/ is on PYTHONPATH (test_launch.py sets it)
from sensor_msgs.msg import Image

from launch import LaunchDescription

THERMAL_TOPIC = "/lt/thermal"
RGB_TOPIC = "/lt/rgb"
FUSED_TOPIC = "/lt/fused"


def generate_test_description() -> LaunchDescription:
    launch_file = Path(get_package_share_directory("sgdfuse_ros")) / "launch" / "fusion.launch.py"
    fusion = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(launch_file)),
        launch_arguments={
            "namespace": "lt_robot",
            "thermal_topic": THERMAL_TOPIC,
            "rgb_topic": RGB_TOPIC,
            "fused_topic": FUSED_TOPIC,
            "steps": "1",
            "log_level": "info",
        }.items(),
    )
    return LaunchDescription([fusion, launch_testing.actions.ReadyToTest()])


class TestFusionThroughLaunch(unittest.TestCase):
    def test_pairs_in_fused_images_out_with_the_rgb_stamps(self, proc_output) -> None:
        proc_output.assertWaitFor("active:", timeout=180)
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=int(os.environ.get("ROS_DOMAIN_ID", "0")))
        node = rclpy.create_node("launch_testing_cameras", context=context)
        received: list[Image] = []
        node.create_subscription(Image, FUSED_TOPIC, received.append, 10)
        thermal_pub = node.create_publisher(Image, THERMAL_TOPIC, 10)
        rgb_pub = node.create_publisher(Image, RGB_TOPIC, 10)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        try:
            deadline = time.monotonic() + 60.0
            while not (thermal_pub.get_subscription_count() and rgb_pub.get_subscription_count()):
                self.assertLess(time.monotonic(), deadline, "fusion_node never subscribed")
                time.sleep(0.05)
            start_ns = node.get_clock().now().nanoseconds
            sent = []
            for index in range(40):  # until the first fused image is back
                stamp_ns = start_ns + index * 100_000_000
                thermal, rgb = stamped_pair(stamp_ns, seed=index)
                thermal_pub.publish(thermal)
                rgb_pub.publish(rgb)
                sent.append(stamp_ns)
                time.sleep(0.5)
                if received:
                    break
            self.assertTrue(received, "no fused image received")
            fused = received[0]
            stamp_ns = fused.header.stamp.sec * 1_000_000_000 + fused.header.stamp.nanosec
            self.assertIn(stamp_ns, sent)
            self.assertEqual(fused.header.frame_id, "rgb_optical")
        finally:
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown(context=context)


@launch_testing.post_shutdown_test()
class TestCleanShutdown(unittest.TestCase):
    def test_every_process_exited_0(self, proc_info) -> None:
        launch_testing.asserts.assertExitCodes(proc_info)

    def test_one_shutdown_line_and_no_traceback(self, proc_output) -> None:
        text = "".join(output.text.decode(errors="replace") for output in proc_output)
        self.assertNotIn("Traceback", text)
        self.assertNotIn("context is invalid", text)
        self.assertEqual(text.count("shut down on"), 1, text)
