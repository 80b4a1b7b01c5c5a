"""fastsam_ros: FastSAM segment-anything as a ROS 2 node.

The generated message and service modules (fastsam_ros.msg, fastsam_ros.srv) are
installed by the interface build into the same package directory of the install
prefix; extending the package path lets a source checkout find them too.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
