"""fastsam_ros: FastSAM segment-anything as a ROS 2 node.

core/ holds what runs without ROS, ros/ the node around it, tools/ the user commands;
the messages and services are the fastsam_msgs package.
"""
