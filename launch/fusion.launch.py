"""Start the sgdfuse_ros fusion node: thermal + RGB in, fused image on /fused/image.

    ros2 launch sgdfuse_ros fusion.launch.py thermal_topic:=/flir/image_raw \
        rgb_topic:=/camera/color/image_raw device:=cuda steps:=1

Thin on purpose: the arguments and what they turn into live in sgdfuse_ros.ros.launch_args,
which a test also uses to run fusion_node with the same command line where launch_ros is
absent.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from sgdfuse_ros.ros import launch_args


def _fusion_node(context, *args, **kwargs):
    values = launch_args.with_defaults(
        {
            argument.name: LaunchConfiguration(argument.name).perform(context)
            for argument in launch_args.LAUNCH_ARGUMENTS
        }
    )
    node = Node(
        package=launch_args.PACKAGE,
        executable=launch_args.EXECUTABLE,
        name=values["node_name"],
        namespace=values["namespace"],
        parameters=[launch_args.params_file(values), launch_args.parameter_overrides(values)],
        remappings=launch_args.remappings(values),
        ros_arguments=["--log-level", values["log_level"]],
        output="screen",
        emulate_tty=True,
        additional_env=launch_args.NODE_ENVIRONMENT,
    )
    failure_exits_launch = OnProcessExit(
        target_action=node, on_exit=launch_args.fail_launch_if_node_failed
    )
    return [node, RegisterEventHandler(failure_exits_launch)]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                argument.name, default_value=argument.default, description=argument.description
            )
            for argument in launch_args.LAUNCH_ARGUMENTS
        ]
        + [OpaqueFunction(function=_fusion_node)]
    )
