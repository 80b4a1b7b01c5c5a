"""pip installation of the fastsam_ros Python package and its console scripts.

ROS installs build the package with colcon (CMakeLists.txt), which also generates
the messages and services; `make` does the same inside .venv (scripts/setup_env.sh).
"""

from setuptools import find_packages, setup

setup(
    name="fastsam_ros",
    version="0.1.0",
    description="FastSAM segment-anything perception node for ROS 2",
    license="AGPL-3.0-only",
    packages=find_packages(include=["fastsam_ros", "fastsam_ros.*"]),
    # The browser view's page, served by fastsam_web.
    package_data={"fastsam_ros.tools": ["web_static/*.html", "web_static/*.js", "web_static/*.css"]},
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "fastsam_node = fastsam_ros.ros.process:node_main",
            "fastsam_lifecycle_node = fastsam_ros.ros.process:lifecycle_main",
            "fastsam_demo = fastsam_ros.tools.demo:main",
            "fastsam_play = fastsam_ros.tools.play:main",
            "fastsam_record = fastsam_ros.tools.record:main",
            "fastsam_web = fastsam_ros.tools.web:main",
            "fastsam_export = fastsam_ros.tools.export:main",
        ]
    },
)
