"""Config files of the dev tools (the local node's containerd, CNI, kubelet, kube-proxy
and CoreDNS; kind's cluster), as Jinja templates beside this module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def text(template: str, **values: Any) -> str:
    """``template`` rendered with ``values``."""
    return _env.get_template(template).render(**values)


def render(path: Path, template: str, **values: Any) -> Path:
    """Writes ``template`` rendered with ``values`` to ``path``."""
    path.write_text(text(template, **values))
    return path
