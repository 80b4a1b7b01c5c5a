"""Start the fastsam node with config/fastsam.yaml and a camera remap.

ros2 launch fastsam_ros fastsam.launch.py image:=/camera/color/image_raw
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("fastsam_ros")
    arguments = [
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="camera image topic"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "fastsam.yaml"]),
            description="parameter file of the node",
        ),
        DeclareLaunchArgument("depth", default_value="/camera/depth/image_raw", description="aligned depth topic"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info", description="camera info topic"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start rviz with rviz/fastsam.rviz"),
        DeclareLaunchArgument(
            "dds_profile",
            default_value=PathJoinSubstitution([share, "config", "fastdds_large_frames.xml"]),
            description="Fast DDS profile for large best-effort frames (the camera needs it too)",
        ),
    ]
    node = Node(
        package="fastsam_ros",
        executable="fastsam_node",
        name="fastsam",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file")],
        remappings=[
            ("image", LaunchConfiguration("image")),
            ("image/compressed", [LaunchConfiguration("image"), "/compressed"]),
            ("depth", LaunchConfiguration("depth")),
            ("camera_info", LaunchConfiguration("camera_info")),
        ],
        additional_env={"FASTDDS_DEFAULT_PROFILES_FILE": LaunchConfiguration("dds_profile")},
        output="screen",
        emulate_tty=True,
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "rviz", "fastsam.rviz"])],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([*arguments, node, rviz])
