"""Reading YAML that someone else wrote (`streamdist render -f`): strictly.

PyYAML alone takes the last of two equal keys (a spec that says two things), expands
aliases without bound (a "billion laughs" file of a few hundred bytes becomes billions
of nodes once anything walks it), and its error messages quote the offending line,
which may hold a secret. Here a repeated key is refused, a document whose aliases
expand beyond MAX_NODES is refused before it is built, and errors give the problem
and the line number only.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 4 * 1024 * 1024
MAX_NODES = 100_000


class YAMLInputError(ValueError):
    """A file that cannot be read as the operator's input; the message is safe to print."""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping repeating a key."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise YAMLInputError(f"a mapping repeats a key (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_all(text: str) -> list[Any]:
    """Every document of `text`, each checked for size before it is built."""
    if len(text.encode()) > MAX_BYTES:
        raise YAMLInputError(f"the file is larger than {MAX_BYTES} bytes")
    loader = StrictLoader(text)
    try:
        docs = []
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            expanded_size(node)
            docs.append(loader.construct_document(node))
        return docs
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise YAMLInputError(f"not valid YAML: {exc.problem} (line {line})") from None
    except yaml.YAMLError:
        raise YAMLInputError("not valid YAML") from None
    finally:
        loader.dispose()


def expanded_size(node: yaml.Node) -> int:
    """How many nodes the document becomes with every alias expanded; refused past
    MAX_NODES, and when an alias refers to a node that contains it."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(current: yaml.Node) -> int:
        key = id(current)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise YAMLInputError("an alias refers to a node that contains it")
        open_nodes.add(key)
        children: list[yaml.Node] = []
        if isinstance(current, yaml.SequenceNode):
            children = list(current.value)
        elif isinstance(current, yaml.MappingNode):
            children = [n for pair in current.value for n in pair]
        total = 1 + sum(size(child) for child in children)
        open_nodes.discard(key)
        if total > MAX_NODES:
            raise YAMLInputError(f"aliases expand the document beyond {MAX_NODES} nodes")
        sizes[key] = total
        return total

    try:
        return size(node)
    except RecursionError:
        raise YAMLInputError("the document nests too deeply") from None
