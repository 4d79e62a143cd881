"""ament_python package setup; also installable with plain `pip install -e .` where ROS is absent.

ROS 2 client libraries (rclpy, sensor_msgs, ...) are deliberately not listed: on a robot they
come from the system ROS installation and a PyPI copy would shadow it. The bare-machine setup
installs them from requirements/ros-jazzy-pypi.txt.
"""

from glob import glob

from setuptools import find_packages, setup

package_name = "sgdfuse_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=[package_name, f"{package_name}.*"]),
    package_data={package_name: ["weights/*.pt", "weights/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.launch.py")),
        (f"share/{package_name}/config", glob("config/*.yaml")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy",
        "opencv-python-headless",
        "pyyaml",
        "tqdm",
        "scipy",
        "rosbags",
    ],
    extras_require={
        "torch": ["torch", "torchvision", "segment-anything"],
        "onnx": ["onnx", "onnxruntime"],
        "train": ["tensorboard"],
        "detect": ["ai-edge-litert"],  # downstream detection in the evaluation (TFLite SSD)
        "test": ["pytest", "colcon-common-extensions", "ruff"],
    },
    zip_safe=True,
    maintainer="sgdfuse_ros maintainers",
    maintainer_email="maintainers@sgdfuse-ros.invalid",
    description="Real-time infrared-visible image fusion (SGDFuse) as a ROS 2 node.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "fusion_node = sgdfuse_ros.ros.entry:fusion_node",
            "sgdfuse = sgdfuse_ros.cli.main:main",
        ],
    },
)
