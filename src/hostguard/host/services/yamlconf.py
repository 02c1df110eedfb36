"""The small part of YAML that mongod.conf and elasticsearch.yml use, read with PyYAML's safe composer so
every value keeps its line.

Both services accept nested mappings and dotted keys alike (``net: {bindIp: x}`` is ``net.bindIp: x``;
Elasticsearch also ``network.host: x``): the tree is flattened to dotted names. A scalar is kept as the text
written (``true``, ``0.0.0.0``); a sequence as a comma-joined text (how ``bindIp`` lists addresses anyway).
PyYAML is imported when a file is read, never at import time, so scans that do not read these files do not
pay for it.
"""

from __future__ import annotations

from typing import Any

from hostguard.host.base import HostError
from hostguard.host.services.common import Setting, one_line
from hostguard.host.web.model import Where


def flatten(text: str, path: str) -> dict[str, Setting]:
    """Every leaf of the YAML document in ``text`` by dotted name; a file that is not a mapping of mappings,
    sequences and scalars is a :class:`HostError` naming the line."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise HostError(f"{Where(path, line)}: not valid YAML: {one_line(str(exc.problem or exc.context))}") from exc
    except yaml.YAMLError as exc:
        raise HostError(f"{path}: not valid YAML: {one_line(str(exc))}") from exc
    except (ValueError, RecursionError) as exc:   # PyYAML's own limits on odd input (deep nesting, bad chars)
        raise HostError(f"{path}: not valid YAML: {one_line(str(exc))}") from exc
    out: dict[str, Setting] = {}
    if root is None:
        return out
    if not isinstance(root, yaml.MappingNode):
        raise HostError(f"{Where(path, root.start_mark.line + 1)}: the file must be a mapping of settings")
    _walk(root, "", path, out, 0)
    return out


MAX_DEPTH = 32   # no real setting nests deeper; an alias that contains itself would never end


def _walk(node: Any, prefix: str, path: str, out: dict[str, Setting], depth: int) -> None:
    import yaml

    if depth > MAX_DEPTH:
        raise HostError(f"{Where(path, node.start_mark.line + 1)}: settings nested deeper than {MAX_DEPTH}")
    for key_node, value_node in node.value:
        where = Where(path, key_node.start_mark.line + 1)
        if not isinstance(key_node, yaml.ScalarNode):
            raise HostError(f"{where}: a setting name must be plain text")
        name = f"{prefix}{key_node.value}"
        if isinstance(value_node, yaml.MappingNode):
            _walk(value_node, name + ".", path, out, depth + 1)
        elif isinstance(value_node, yaml.SequenceNode):
            items = []
            for item in value_node.value:
                if not isinstance(item, yaml.ScalarNode):
                    raise HostError(f"{Where(path, item.start_mark.line + 1)}: {name}: a list of plain values expected")
                items.append(str(item.value))
            out[name] = Setting(",".join(items), where)
        else:
            out[name] = Setting(str(value_node.value), where)
