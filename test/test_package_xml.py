"""package.xml declares what the package needs, so `rosdep install --from-paths src` on a robot
leaves a node that starts.

The imports of the package, the launch file and the tests are read from the source (ast), so a
new import without its rosdep key fails here instead of on a robot.
"""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# imported module -> its rosdep key
ROSDEP_KEYS = {
    "ament_index_python": "ament_index_python",
    "builtin_interfaces": "builtin_interfaces",
    "cv2": "python3-opencv",
    "cv_bridge": "cv_bridge",
    "diagnostic_msgs": "diagnostic_msgs",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "launch_testing": "launch_testing",
    "launch_testing_ros": "launch_testing_ros",
    "lifecycle_msgs": "lifecycle_msgs",
    "message_filters": "message_filters",
    "numpy": "python3-numpy",
    "PIL": "python3-pil",
    "pytest": "python3-pytest",
    "rcl_interfaces": "rcl_interfaces",
    "rclpy": "rclpy",
    "rosgraph_msgs": "rosgraph_msgs",
    "scipy": "python3-scipy",
    "sensor_msgs": "sensor_msgs",
    "std_msgs": "std_msgs",
    "tqdm": "python3-tqdm",
    "yaml": "python3-yaml",
}
# rosdistro has no key for these: pip installs them (setup.py requirement, or NVIDIA's stack)
PIP_ONLY = {
    "ai_edge_litert": "ai-edge-litert",  # optional: detection in `sgdfuse eval` (extra 'detect')
    "onnx": "onnx",
    "onnxconverter_common": None,  # optional, fp16 engine export only; error says how to install
    "onnxruntime": "onnxruntime",
    "rosbags": "rosbags",
    "segment_anything": "segment-anything",
    "tensorrt": None,  # comes with TensorRT on a CUDA machine
    "torch": "torch",
    "torchvision": "torchvision",
}
# what runs without being imported: README's `ros2 launch` command
RUN_TIME_TOOLS = {"ros2launch"}
# the package, the training scripts and this folder's modules (helpers, rigs shared by tests)
# The package, the training code, and the repository's own scripts that tests import by path
# (test helpers, benchmarks/*.py).
LOCAL_MODULES = {"sgdfuse_ros", "training"} | {
    p.stem for folder in ("test", "benchmarks") for p in (ROOT / folder).glob("*.py")
}
# setup.py requirement name -> imported module
REQUIREMENT_MODULES = {"opencv-python-headless": "cv2", "pyyaml": "yaml"}


def dependencies(*tags: str) -> set[str]:
    root = ElementTree.parse(ROOT / "package.xml").getroot()
    return {element.text.strip() for tag in tags for element in root.findall(tag)}


def third_party_imports(*folders: str) -> dict[str, str]:
    """Top-level third-party module -> one file importing it."""
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in LOCAL_MODULES:
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def setup_keyword(name: str) -> object:
    """A literal keyword argument of setup.py's setup() call, read without running it."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup"
    )
    return next(ast.literal_eval(kw.value) for kw in call.keywords if kw.arg == name)


def test_every_run_time_import_has_its_exec_depend() -> None:
    run_time = dependencies("exec_depend", "depend")
    missing = []
    for module, where in third_party_imports("sgdfuse_ros", "launch").items():
        if module in PIP_ONLY:
            continue
        assert module in ROSDEP_KEYS, (
            f"{where} imports {module}: add its rosdep key to ROSDEP_KEYS and package.xml"
        )
        if ROSDEP_KEYS[module] not in run_time:
            missing.append(f"{ROSDEP_KEYS[module]} ({module}, imported by {where})")
    assert not missing, "package.xml lacks <exec_depend> for: " + ", ".join(missing)
    assert RUN_TIME_TOOLS <= run_time


def test_every_test_import_is_declared() -> None:
    declared = dependencies("exec_depend", "depend", "test_depend")
    missing = [
        f"{ROSDEP_KEYS.get(module, module)} ({module}, imported by {where})"
        for module, where in third_party_imports("test").items()
        if module not in PIP_ONLY and ROSDEP_KEYS.get(module) not in declared
    ]
    assert not missing, "package.xml lacks <test_depend> for: " + ", ".join(missing)


def test_setup_py_requirements_have_a_rosdep_key_or_are_pip_only() -> None:
    install_requires = setup_keyword("install_requires")
    extras = setup_keyword("extras_require")
    run_time = dependencies("exec_depend", "depend")
    pip_requirements = {name for name in PIP_ONLY.values() if name}
    for requirement in install_requires + extras["torch"] + extras["onnx"]:
        module = REQUIREMENT_MODULES.get(requirement, requirement.replace("-", "_"))
        if requirement in pip_requirements:
            continue
        assert ROSDEP_KEYS.get(module) in run_time, (
            f"setup.py requires {requirement}: package.xml needs its rosdep key"
        )
    # every pip-only library the code imports is installed by setup.py (or says how)
    for module, requirement in PIP_ONLY.items():
        if requirement is not None:
            assert requirement in install_requires + [
                name for names in extras.values() for name in names
            ], f"{module} is pip-only but setup.py does not install {requirement}"


def test_package_xml_is_an_ament_python_package_of_format_3() -> None:
    root = ElementTree.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "sgdfuse_ros"
    assert root.findtext("export/build_type") == "ament_python"
    assert root.findtext("version") == setup_keyword("version")
