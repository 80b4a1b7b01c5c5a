"""The ROS shell: the node as the scheduler, each camera's path, prompt services, message conversions.

It converts messages and wires callbacks; the work is done by fastsam_ros.core.
"""
