"""`streamdist run` (the operator) and `streamdist render -f FILE...` (no cluster)."""

from __future__ import annotations

import argparse
import base64
import dataclasses
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from . import ports, render, urls
from .models import explain, parse_input, parse_output
from .settings import Settings, from_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streamdist", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run the operator against the current kube context")
    run_p.add_argument("--namespace", "-n", action="append", default=[], help="watch only these namespaces")
    run_p.add_argument("--liveness", default=os.environ.get("STREAMDIST_LIVENESS", "http://0.0.0.0:8080/healthz"))
    run_p.add_argument("--verbose", action="store_true")
    render_p = sub.add_parser("render", help="print every manifest the operator would apply, with no cluster")
    render_p.add_argument("-f", "--filename", action="append", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.command == "render":
        return render_files(args.filename, from_env(), sys.stdout)
    return run_operator(args)


def run_operator(args: argparse.Namespace) -> int:
    import kopf
    from kopf._core.engines import peering as kopf_peering

    from .handlers import registry
    from .handlers.context import Context
    from .kube import Kube

    settings = from_env()
    if not settings.identity:
        settings = dataclasses.replace(settings, identity=str(kopf_peering.detect_own_id(manual=False)))
    namespaces = list(args.namespace) or list(settings.namespaces)
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON)
    if not args.verbose:
        # kopf logs every handler run; our own lines already say what changed.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    ctx = Context(kube=Kube(), settings=settings)
    assert registry.startup  # the handlers register themselves on import
    kopf.run(
        standalone=not settings.peering,
        peering_name=settings.peering or None,
        priority=settings.priority,
        identity=kopf_peering.Identity(settings.identity),
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness,
        memo=kopf.Memo(ctx=ctx),
    )
    return 0


# --- render --------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the MediaMTX config) print as readable literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def load_docs(files: Iterable[Path]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in files:
        paths = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for p in paths:
            docs.extend(d for d in yaml.safe_load_all(p.read_text()) if d)
    return docs


def render_docs(docs: list[dict[str, Any]], settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """(source, manifest) pairs for every input and output found in `docs`."""
    secrets = {(_ns(d), d["metadata"]["name"]): d for d in docs if d.get("kind") == "Secret"}
    out: list[tuple[str, dict[str, Any]]] = []
    claims: list[ports.Claim] = []
    for doc in docs:
        if doc.get("kind") != "StreamInput":
            continue
        doc = _with_ns(doc)
        inp = parse_input(doc)
        key = (inp.metadata.namespace, inp.metadata.name)
        got = ports.assign(None, key, str(len(claims)).zfill(6), inp.spec.port, claims, settings.port_range)
        if got.port is None:
            raise SystemExit(f"StreamInput {'/'.join(key)}: port {inp.spec.port} clashes with {got.conflict_with}")
        claims.append(ports.Claim(key, got.port, str(len(claims)).zfill(6)))
        out += [(f"StreamInput {'/'.join(key)}", m) for m in render.render_input(inp, got.port, settings)]
    for doc in docs:
        if doc.get("kind") != "StreamOutput":
            continue
        doc = _with_ns(doc)
        output = parse_output(doc)
        url = output.spec.url or _secret_value(secrets, output.metadata.namespace, output)
        plan = render.OutputPlan(destination=urls.parse(url))
        source = f"StreamOutput {output.metadata.namespace}/{output.metadata.name}"
        out += [(source, m) for m in render.render_output(output, plan, settings)]
    return out


def render_files(files: list[Path], settings: Settings, stream: Any) -> int:
    try:
        rendered = render_docs(load_docs(files), settings)
    except ValidationError as exc:
        print(f"streamdist render: invalid spec: {explain(exc)}", file=sys.stderr)
        return 1
    except urls.URLError as exc:
        print(f"streamdist render: invalid destination: {exc}", file=sys.stderr)
        return 1
    for source, manifest in rendered:
        stream.write(f"---\n# Source: {source}\n")
        stream.write(yaml.dump(manifest, Dumper=_Dumper, sort_keys=False))
    return 0


def _ns(doc: dict[str, Any]) -> str:
    return (doc.get("metadata") or {}).get("namespace") or "default"


def _with_ns(doc: dict[str, Any]) -> dict[str, Any]:
    meta = {**doc["metadata"], "namespace": _ns(doc), "uid": doc["metadata"].get("uid", "<uid>")}
    return {**doc, "metadata": meta}


def _secret_value(secrets: dict[tuple[str, str], dict[str, Any]], ns: str, output: Any) -> str:
    ref = output.spec.url_from.secret_key_ref
    secret = secrets.get((ns, ref.name))
    if secret is None:
        raise urls.URLError(f"urlFrom names Secret {ref.name!r}: give its manifest with -f to render this output")
    if ref.key in (secret.get("stringData") or {}):
        return str(secret["stringData"][ref.key])
    raw = (secret.get("data") or {}).get(ref.key)
    if raw is None:
        raise urls.URLError(f"Secret {ref.name!r} has no key {ref.key!r}")
    return base64.b64decode(raw).decode()


if __name__ == "__main__":
    sys.exit(main())
