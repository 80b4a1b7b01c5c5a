"""Small rosbag2 (MCAP) bags for the players' tests."""

from __future__ import annotations

from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
"""The ROS 2 message definitions the bags are written with."""


def write_bag(path: Path, msgtype: str, messages: list[bytes], topic: str = "/camera") -> Path:
    """A bag of these serialized messages on one topic, logged 50 ms apart from 1 s on."""
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection(topic, msgtype, typestore=TYPESTORE)
        for index, message in enumerate(messages):
            writer.write(connection, 1_000_000_000 + index * 50_000_000, message)
    return path
