"""fastsam as a managed (lifecycle) node, for systems that bring nodes up in order.

unconfigured --configure--> inactive: parameters validated, model loaded
inactive --activate--> active: frames taken in, services offered
active --deactivate--> inactive: no subscription, no inference, no growth
inactive --cleanup--> unconfigured: model released (GPU memory too)

Parameters are validated from construction on, also while unconfigured, and configure
reads their current values: a configure that failed succeeds once they are corrected.
"""

from __future__ import annotations

from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from fastsam_ros.core.backends.model_errors import ModelLoadError
from fastsam_ros.core.parameters import ConfigError
from fastsam_ros.ros.node import FastSamBehaviour


class FastSamLifecycleNode(FastSamBehaviour, LifecycleNode):
    def __init__(self, node_name: str = "fastsam", **kwargs: Any) -> None:
        LifecycleNode.__init__(self, node_name, **kwargs)
        self._set_up()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except (ConfigError, ModelLoadError) as error:
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        except Exception as error:  # a bug: stay unconfigured and able to try again
            self.get_logger().error(f"configure failed: {error!r}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._start()
        self.get_logger().info("active: segmenting frames")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self.get_logger().info("inactive: not taking frames")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("unconfigured: model released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return TransitionCallbackReturn.SUCCESS
