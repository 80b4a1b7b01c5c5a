"""Quality of service of the prompt services, for the node and for every client of it.

Fast DDS hands each response of a service to every client of that service; each client
keeps the ones addressed to it when it takes them. A client keeps only the newest `depth`
responses it has not yet taken, whoever they are for. With the ROS default of 10, a client
that did not spin for a moment while other callers were answered (a busy thread, a starved
process) found its own response pushed out and waited for it in vain: 5 of 5 calls were lost
when a client paused 50 ms while three others called as fast as they could, and 3 of 636 in a
short soak on a loaded machine. The service's writer keeps the same number, so that a
response can still be sent again to a client that missed it.
Upstream entry: fastsam_ros.core.compat.FASTDDS_RESPONSES_TO_EVERY_CLIENT.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

SERVICE_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
"""Holds half a second of responses at 200 calls a second (four clients at 50 Hz)."""
