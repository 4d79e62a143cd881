"""Parameter files and ``-p`` assignments read the way rcl reads them, so the node can check them.

Why the node reads them itself: rcl merges layered files slot by slot per type, so ``steps: 2.0``
or ``steps: "3"`` over the shipped ``steps: 0`` leaves the stale integer 0 in place and nobody is
told, and a value of the wrong type reaches rclpy as an exception that does not name the file.
This module reproduces rcl's scalar typing (rcl_yaml_param_parser ``get_value``), its node-name
wildcards (``/**``, ``*``) and rclpy's precedence (node sections in order of first appearance,
later files overwrite, ``-p`` over files, ``parameter_overrides`` over all), so the node decides
each value itself and can say which file a bad one came from. No rclpy here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ParameterFileError(ValueError):
    """A parameter file, assignment or value the node cannot use; the message is one line."""


@dataclass(frozen=True)
class GivenValue:
    """A parameter value and where it came from (a file path, ``-p`` or parameter_overrides)."""

    name: str
    value: Any
    source: str


@dataclass(frozen=True)
class ParameterFile:
    path: str
    # (absolute node key such as "/**" or "/robot1/sgdfuse_fusion", {parameter: value}), in order
    sections: tuple[tuple[str, dict[str, Any]], ...]


_TRUE = frozenset("Y y yes Yes YES true True TRUE on On ON".split())
_FALSE = frozenset("N n no No NO false False FALSE off Off OFF".split())
_YAML_INFINITIES = {
    sign + dot_inf: (-math.inf if sign == "-" else math.inf)
    for sign in ("", "+", "-")
    for dot_inf in (".inf", ".Inf", ".INF")
}
_YAML_NANS = frozenset((".nan", ".NaN", ".NAN"))
_C_INTEGER = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_C_DOUBLE = re.compile(
    r"[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf(inity)?|nan)", flags=re.IGNORECASE
)
_INT64 = (-(2**63), 2**63 - 1)


def rcl_scalar(text: str, quoted: bool = False) -> Any:
    """The value rcl gives a YAML scalar: quoted is a string; plain is tried as bool, as a C
    integer (``strtol`` base 0: ``0x10``, octal ``010``), as a C double, else a string."""
    if quoted:
        return text
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _C_INTEGER.fullmatch(text):
        digits = text.lstrip("+-")
        base = (
            16 if digits[:2].lower() == "0x" else 8 if len(digits) > 1 and digits[0] == "0" else 10
        )
        value = int(text, base)
        if _INT64[0] <= value <= _INT64[1]:
            return value  # out of range: strtol fails and rcl tries a double
    if text in _YAML_INFINITIES:
        return _YAML_INFINITIES[text]
    if text in _YAML_NANS:
        return math.nan
    if _C_DOUBLE.fullmatch(text):
        value = float(text)
        if math.isinf(value) and "inf" not in text.lower():
            return text  # strtod overflow (1e999): rcl keeps the text
        return value
    return text


def _kind(value: Any) -> str:
    return {bool: "bool", int: "integer", float: "double", str: "string"}[type(value)]


def _typed(node: yaml.Node, path: str, name: str) -> Any:
    """A parameter's value node: a scalar or a list of scalars of one type, as rcl reads it."""
    where = f"{path} line {node.start_mark.line + 1}"
    if isinstance(node, yaml.ScalarNode):
        quoted = node.style in ("'", '"')
        if not quoted and node.value == "":
            raise ParameterFileError(f"parameter {name} in {where}: no value")
        return rcl_scalar(node.value, quoted)
    if isinstance(node, yaml.SequenceNode):
        items = []
        for item in node.value:
            if not isinstance(item, yaml.ScalarNode):
                raise ParameterFileError(
                    f"parameter {name} in {where}: a list may only hold plain values"
                )
            items.append(_typed(item, path, name))
        kinds = sorted({_kind(item) for item in items})
        if len(kinds) > 1:  # rcl refuses the whole file: "Sequence should be of same type"
            hint = (
                "; write every number with a decimal point"
                if kinds == ["double", "integer"]
                else ""
            )
            raise ParameterFileError(
                f"parameter {name} in {where}: a list mixes {' and '.join(kinds)} items {items}"
                + hint
            )
        return items
    raise ParameterFileError(f"parameter {name} in {where}: expected a value, got a mapping")


def _flatten(node: yaml.MappingNode, path: str, prefix: str, into: dict[str, Any]) -> None:
    for key, value in node.value:
        name = prefix + str(key.value)
        if isinstance(value, yaml.MappingNode):
            _flatten(value, path, name + ".", into)
        else:
            into[name] = _typed(value, path, name)


def _sections(
    node: yaml.Node, path: str, keys: tuple[str, ...], into: list[tuple[str, dict[str, Any]]]
) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    for key, value in node.value:
        if key.value == "ros__parameters" and keys:
            if not isinstance(value, yaml.MappingNode):
                raise ParameterFileError(f"{path}: ros__parameters of {'/'.join(keys)} is empty")
            parameters: dict[str, Any] = {}
            _flatten(value, path, "", parameters)
            name = "/".join(keys)
            into.append((name if name.startswith("/") else "/" + name, parameters))
        else:
            _sections(value, path, (*keys, str(key.value)), into)


def read_parameter_file(path: str | Path) -> ParameterFile:
    """The node sections of one ``--params-file``; ParameterFileError (one line) when the file
    is missing, is not YAML or holds a value rcl would refuse."""
    path = str(path)
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ParameterFileError(
            f"parameter file {path}: {getattr(error, 'strerror', None) or error}"
        ) from error
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ParameterFileError(
            f"parameter file {path}{line}: not valid YAML ({problem})"
        ) from error
    sections: list[tuple[str, dict[str, Any]]] = []
    if root is not None:
        _sections(root, path, (), sections)
    return ParameterFile(path, tuple(sections))


def node_key_matches(key: str, fully_qualified_name: str) -> bool:
    """Whether a parameter file's node key applies to the node: ``*`` stands for one name
    token, ``**`` for any number (``/**`` matches every node), as in rclpy."""
    pattern = ""
    for token in key.strip("/").split("/"):
        if token == "**":
            pattern += "(/[^/]+)*"
        elif token == "*":
            pattern += "/[^/]+"
        else:
            pattern += "/" + re.escape(token)
    return re.fullmatch(pattern, fully_qualified_name) is not None


@dataclass(frozen=True)
class ParameterSources:
    """The parameter files and ``-p`` assignments of a command line, read once at start."""

    files: tuple[ParameterFile, ...] = ()
    # (node key, parameter, value) of each -p; "/**" unless given as -p node:name:=value
    assignments: tuple[tuple[str, str, Any], ...] = field(default=())

    @classmethod
    def from_arguments(cls, arguments: Sequence[str]) -> ParameterSources:
        """``--params-file`` and ``-p``/``--param`` inside the ``--ros-args`` sections of a
        command line (what rcl reads); the files are read now."""
        files: list[ParameterFile] = []
        assignments: list[tuple[str, str, Any]] = []
        in_ros_args = False
        tokens = list(arguments)
        index = 0
        while index < len(tokens):
            token = tokens[index]
            if token == "--ros-args":
                in_ros_args = True
            elif token == "--" and in_ros_args:
                in_ros_args = False
            elif in_ros_args and token in ("--params-file", "-p", "--param"):
                if index + 1 < len(tokens):
                    index += 1
                    if token == "--params-file":
                        files.append(read_parameter_file(tokens[index]))
                    else:
                        assignments.append(_assignment(tokens[index]))
            index += 1
        return cls(tuple(files), tuple(assignments))

    def values_for(
        self, fully_qualified_name: str, overrides: Sequence[tuple[str, Any]] = ()
    ) -> dict[str, GivenValue]:
        """Every value given to the node, with its source, in rclpy's precedence."""
        merged: dict[str, dict[str, GivenValue]] = {}
        for parameter_file in self.files:
            for key, parameters in parameter_file.sections:
                merged.setdefault(key, {}).update(
                    {
                        name: GivenValue(name, value, parameter_file.path)
                        for name, value in parameters.items()
                    }
                )
        given: dict[str, GivenValue] = {}
        for key, parameters in merged.items():
            if node_key_matches(key, fully_qualified_name):
                given.update(parameters)
        for key, name, value in self.assignments:
            if node_key_matches(key, fully_qualified_name):
                given[name] = GivenValue(name, value, "-p")
        for name, value in overrides:
            given[name] = GivenValue(name, value, "parameter_overrides")
        return given


def _assignment(text: str) -> tuple[str, str, Any]:
    """``[node:]name:=value`` of ``-p``: the node key it applies to, the name and the value
    typed as rcl types it (YAML, like a file's)."""
    target, separator, value = text.partition(":=")
    if not separator:
        raise ParameterFileError(f"-p {text}: expected name:=value")
    node, _, name = target.rpartition(":")
    key = "/**" if not node else node if node.startswith("/") else "/" + node
    try:
        parsed = yaml.compose(value or "''", Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise ParameterFileError(f"-p {text}: the value is not valid YAML") from error
    return key, name, _typed(parsed, "-p", name)
