"""`streamdist run` (the operator), `streamdist render -f FILE...` (no cluster) and
`streamdist ui` (the control room web page)."""

from __future__ import annotations

import argparse
import base64
import dataclasses
import getpass
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from . import credentials, ports, render, secret_policy, urls, yaml_input
from .models import SecretKeyRef, StreamInput, explain, parse_input, parse_output
from .secret_policy import Usage
from .settings import Settings, from_env

Secrets = dict[tuple[str, str], dict[str, Any]]


class RenderError(Exception):
    """A file cannot be rendered as the operator would; the message is safe to print."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streamdist", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run the operator against the current kube context")
    run_p.add_argument("--namespace", "-n", action="append", default=[], help="watch only these namespaces")
    run_p.add_argument("--liveness", default=os.environ.get("STREAMDIST_LIVENESS", "http://0.0.0.0:8080/healthz"))
    run_p.add_argument("--verbose", action="store_true")
    render_p = sub.add_parser("render", help="print every manifest the operator would apply, with no cluster")
    render_p.add_argument("-f", "--filename", action="append", required=True, type=Path)
    add_ui_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "render":
        return render_files(args.filename, from_env(), sys.stdout)
    if args.command == "ui":
        return run_ui(args)
    return run_operator(args)


def identity() -> str:
    """Who this replica is in kopf's peering object: the pod's name (POD_ID) in a
    cluster, else user@host/started/random, the form kopf gives itself."""
    started = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    return f"{getpass.getuser()}@{socket.gethostname()}/{started}/{secrets.token_hex(2)}"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("true", "1", "yes", "on")


def add_ui_parser(sub: Any) -> None:
    ui_p = sub.add_parser("ui", help="serve the control room web page; it acts with each viewer's token")
    ui_p.add_argument("--host", default=os.environ.get("STREAMDIST_UI_HOST", "0.0.0.0"))
    ui_p.add_argument("--port", type=int, default=int(os.environ.get("STREAMDIST_UI_PORT", "8000")))
    ui_p.add_argument("--kubeconfig", default=None, help="default: in-cluster ServiceAccount, else $KUBECONFIG")
    ui_p.add_argument(
        "--anonymous-read", action=argparse.BooleanOptionalAction, default=_env_flag("STREAMDIST_UI_ANONYMOUS_READ"),
        help="without a token, read with the page's own ServiceAccount (default: off)",
    )  # fmt: skip
    ui_p.add_argument("--namespace", default=os.environ.get("STREAMDIST_UI_NAMESPACE", ""),
                      help="namespace the page opens on (default: all the viewer may list)")
    ui_p.add_argument("--operator-url", default=os.environ.get("STREAMDIST_UI_OPERATOR_URL", ""),
                      help="the operator's thumbnail endpoint, e.g. http://streamdist:8081 (default: no thumbnails)")
    ui_p.add_argument("--operator-token-file", default=os.environ.get("STREAMDIST_UI_OPERATOR_TOKEN_FILE", ""),
                      help="the page's token for the operator (audience streamdist-operator)")


def run_ui(args: argparse.Namespace) -> int:
    from .ui import kubeapi, server

    if not (server.STATIC / "vendor" / "bootstrap.min.css").is_file():
        print("streamdist ui: the page's assets are not built (run hack/build-ui.sh)", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    api = kubeapi.Api(kubeapi.load_cluster(args.kubeconfig))
    if args.operator_url and not args.operator_token_file:
        print("streamdist ui: --operator-url needs --operator-token-file", file=sys.stderr)
        return 2
    options = server.Options(anonymous_read=args.anonymous_read, namespace=args.namespace,
                             operator_url=args.operator_url, operator_token_file=args.operator_token_file)
    server.serve(api, options, args.host, args.port)
    return 0


def run_operator(args: argparse.Namespace) -> int:
    import kopf

    from .handlers import registry
    from .handlers.context import Context
    from .kube import Kube

    settings = from_env()
    if not settings.identity:
        settings = dataclasses.replace(settings, identity=identity())
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
        identity=settings.identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str
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
            try:
                docs.extend(d for d in yaml_input.load_all(p.read_text()) if d)
            except yaml_input.YAMLInputError as exc:
                raise RenderError(f"{p}: {exc}") from None
    if any(not isinstance(d, dict) or not isinstance((d.get("metadata") or {}).get("name"), str) for d in docs):
        raise RenderError("every document must be a Kubernetes object (a mapping with metadata.name)")
    return docs


def render_docs(docs: list[dict[str, Any]], settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """(source, manifest) pairs for every input and output found in `docs`."""
    secrets = {(_ns(d), d["metadata"]["name"]): d for d in docs if d.get("kind") == "Secret"}
    out: list[tuple[str, dict[str, Any]]] = []
    claims: list[ports.Claim] = []
    for doc in docs:
        if doc.get("kind") != "StreamInput":
            continue
        inp = parse_input(_with_ns(doc))
        key = (inp.metadata.namespace, inp.metadata.name)
        got = ports.assign(None, key, str(len(claims)).zfill(6), inp.spec.port, claims, settings.port_range)
        if got.port is None:
            raise RenderError(f"StreamInput {'/'.join(key)}: spec.port clashes with an earlier StreamInput's")
        claims.append(ports.Claim(key, got.port, str(len(claims)).zfill(6)))
        router = _router_plan(secrets, inp)
        manifests = render.render_input(inp, got.port, settings, router)
        out += [(f"StreamInput {'/'.join(key)}", _shown(m)) for m in manifests]
    for doc in docs:
        if doc.get("kind") != "StreamOutput":
            continue
        output = parse_output(_with_ns(doc))
        ref = output.spec.url_from.secret_key_ref if output.spec.url_from else None
        url = output.spec.url or _secret_value(secrets, output.metadata.namespace, ref, "destination", required=True)
        plan = render.OutputPlan(destination=urls.parse(str(url)))
        source = f"StreamOutput {output.metadata.namespace}/{output.metadata.name}"
        out += [(source, m) for m in render.render_output(output, plan, settings)]
    return out


def _router_plan(secrets: Secrets, inp: StreamInput) -> render.RouterPlan:
    """The render stand-ins, with the publisher and passphrase of Secrets given with -f
    (the operator's rule applies: only Secrets that opted in are used)."""
    plan = render.RouterPlan.for_render(inp)
    ns, spec = inp.metadata.namespace, inp.spec
    user = _secret_value(secrets, ns, spec.publish_secret_ref, "publish")
    passphrase = _secret_value(secrets, ns, spec.passphrase_secret_ref, "passphrase")
    try:
        publisher = credentials.parse_publisher(user) if user is not None else plan.publisher
        passphrase = credentials.check_srt_passphrase(passphrase) if passphrase is not None else plan.srt_passphrase
    except credentials.CredentialError as exc:
        raise RenderError(f"StreamInput {ns}/{inp.metadata.name}: {exc}") from None
    return dataclasses.replace(plan, publisher=publisher, srt_passphrase=passphrase)


def _shown(manifest: dict[str, Any]) -> dict[str, Any]:
    """What render prints: a Secret's values never (the operator writes them itself)."""
    if manifest.get("kind") != "Secret":
        return manifest
    return {**manifest, "stringData": {k: "<set by the operator>" for k in manifest.get("stringData") or {}}}


def render_files(files: list[Path], settings: Settings, stream: Any) -> int:
    try:
        rendered = render_docs(load_docs(files), settings)
    except ValidationError as exc:
        print(f"streamdist render: invalid spec: {explain(exc)}", file=sys.stderr)
        return 1
    except urls.URLError as exc:
        print(f"streamdist render: invalid destination: {exc}", file=sys.stderr)
        return 1
    except RenderError as exc:
        print(f"streamdist render: {exc}", file=sys.stderr)
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


def _secret_value(
    secrets: Secrets, ns: str, ref: SecretKeyRef | None, usage: Usage, required: bool = False
) -> str | None:
    """A value from a Secret given with -f, under the operator's opt-in rule."""
    if ref is None:
        return None
    where = secret_policy.FIELDS[usage]
    secret = secrets.get((ns, ref.name))
    if secret is None:
        if required:
            raise RenderError(f"{where} names a Secret: give its manifest with -f to render this output")
        return None
    meta = secret_policy.SecretMeta((secret.get("metadata") or {}).get("labels") or {}, secret.get("type", "Opaque"))
    refused = secret_policy.refusal(meta, usage)
    if refused:
        raise RenderError(f"{refused.reason}: {refused.message}")
    if ref.key in (secret.get("stringData") or {}):
        return str(secret["stringData"][ref.key])
    raw = (secret.get("data") or {}).get(ref.key)
    if raw is None:
        raise RenderError(secret_policy.missing_key(usage).message)
    return base64.b64decode(raw).decode()


if __name__ == "__main__":
    sys.exit(main())
