"""Run what ``streamdist.render`` produces, as a cluster would, on loopback.

The media tests must exercise the rendered artefacts themselves, not copies:

* an input: the ConfigMap's ``mediamtx.yml`` is written out byte for byte, at the
  path the Deployment's volume mount gives it, and the real MediaMTX is started
  with the Deployment container's ``args`` and ``env`` (``secretKeyRef`` resolved
  from a test Secret dict). The only additions are MediaMTX's own ``MTX_*``
  environment overrides of listen addresses, so that parallel tests do not collide
  on 8554/9997/9998 and everything binds 127.0.0.1;
* an output: the Pod's container ``command + args`` is run as argv, exactly, with the
  Pod's env and the kubelet's ``$(VAR)`` expansion; the only rewrite is the
  in-cluster service host ``<input>.<ns>.svc:8554`` -> ``127.0.0.1:<router port>``.

A ``KubeletLoop`` restarts an output's process when it exits (``restartPolicy:
Always``), recording each exit's time, code and termination message as the kubelet
(``FallbackToLogsOnError``) and the operator (``status.one_line_error``) see it.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streamdist import confidence, credentials, render, switch_render, switch_state, urls
from streamdist.models import CREDENTIAL_PROTOCOLS, StreamInput, StreamOutput, parse_input, parse_output
from streamdist.settings import Settings
from streamdist.status import PodView, last_error, one_line_error

from . import media
from .media import LOOPBACK, ManagedProcess, MediaMTX, ProcessGroup
from .wait import wait_for

NAMESPACE = "media"
FFMPEG_IMAGE_DIR = Path(__file__).resolve().parents[2] / "images" / "ffmpeg"
SETTINGS = Settings()

# Secrets as the tests hand them over: {secret name: {key: value}}.
Secrets = Mapping[str, Mapping[str, str]]
# ConfigMaps a pod mounts besides the router's own: {name: {key: text or bytes}}.
ConfigMaps = Mapping[str, Mapping[str, str | bytes]]
# The publisher's credential of an input whose test gives none (user:password).
DEFAULT_PUBLISHER = "publisher:harness-publish-0001"
# Each prepared input's credentials Secret, as the operator writes it: what its output
# pods read their read credential from ((namespace, input) -> data).
_ROUTER_SECRETS: dict[tuple[str, str], dict[str, str]] = {}


# --------------------------------------------------------------------- kubelet bits


def k8s_expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of command/args/env values, as the kubelet does
    it (k8s.io/kubernetes third_party/forked/golang/expansion/expand.go): ``$(NAME)``
    of a defined variable becomes its value, an undefined one stays as written,
    ``$$`` is an escaped ``$``, anything else after ``$`` is left alone."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1 :]
            if rest[0] == "$":
                read, is_var, advance = "$", False, 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close >= 1:
                    read, is_var, advance = rest[1:close], True, close + 1
                else:
                    read, is_var, advance = "$(", False, 1
            else:
                read, is_var, advance = "$" + rest[0], False, 1
            if is_var:
                out.append(env.get(read, f"$({read})"))
            else:
                out.append(read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def resolve_env(container: Mapping[str, Any], secrets: Secrets) -> dict[str, str]:
    """A container's ``env`` as the kubelet resolves it: literal values (with ``$(VAR)``
    of earlier entries expanded) and ``secretKeyRef``s looked up in ``secrets``. A
    missing Secret or key fails, as CreateContainerConfigError would."""
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        name = entry["name"]
        if "value" in entry:
            env[name] = k8s_expand(str(entry["value"]), env)
            continue
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if ref is None:
            raise NotImplementedError(f"env {name}: only value and secretKeyRef are emulated: {entry}")
        secret = secrets.get(ref["name"])
        if secret is None or ref["key"] not in secret:
            raise KeyError(f"env {name}: Secret {ref['name']!r} key {ref['key']!r} not provided to the test")
        env[name] = secret[ref["key"]]
    return env


def termination_message(log_text: str) -> str:
    """What ``terminationMessagePolicy: FallbackToLogsOnError`` gives the operator when
    a container fails: the last 80 lines, at most 2048 bytes, of its log."""
    tail = "\n".join(log_text.splitlines()[-80:])
    return tail.encode()[-2048:].decode(errors="replace")


def _only(docs: Sequence[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, rendered {[d.get('kind') for d in docs]}"
    return found[0]


# --------------------------------------------------------------------------- inputs


def make_input(
    name: str,
    protocol: str,
    *,
    passphrase_ref: tuple[str, str] | None = None,
    publish_ref: tuple[str, str] | None = None,
    namespace: str = NAMESPACE,
    **extra: Any,
) -> StreamInput:
    """A StreamInput; one with an srt, rtmp or rtsp ingest gets a publishSecretRef
    (``<name>-publish``/``credential`` unless given: DEFAULT_PUBLISHER then)."""
    spec: dict[str, Any] = {"protocol": protocol, **extra}
    if passphrase_ref:
        spec["passphraseSecretRef"] = {"name": passphrase_ref[0], "key": passphrase_ref[1]}
    backup = extra.get("backup")
    protocols = {protocol, *([backup.get("protocol", "udp")] if backup else [])}
    if publish_ref is None and protocols & CREDENTIAL_PROTOCOLS:
        publish_ref = (f"{name}-publish", "credential")
    if publish_ref:
        spec["publishSecretRef"] = {"name": publish_ref[0], "key": publish_ref[1]}
    return parse_input({"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"}, "spec": spec})


def router_plan(inp: StreamInput, secrets: Secrets) -> render.RouterPlan:
    """The plan the operator would make: derived credentials (the render key), the
    publisher and the SRT passphrase from the test's Secrets."""
    plan = render.RouterPlan.for_render(inp)
    spec = inp.spec
    publisher = passphrase = None
    if spec.publish_secret_ref:
        ref = spec.publish_secret_ref
        publisher = credentials.parse_publisher((secrets.get(ref.name) or {}).get(ref.key, DEFAULT_PUBLISHER))
    if spec.passphrase_secret_ref:
        ref = spec.passphrase_secret_ref
        passphrase = credentials.check_srt_passphrase(secrets[ref.name][ref.key])
    return render.RouterPlan(plan.credentials, publisher, passphrase)


@dataclass
class RenderedInput:
    """One StreamInput's router, running from its rendered ConfigMap and Deployment."""

    model: StreamInput
    plan: render.RouterPlan
    docs: list[dict[str, Any]]
    config_text: str
    config_path: Path
    argv: list[str]
    env: dict[str, str]  # the Deployment container's env, resolved
    overrides: dict[str, str]  # MTX_* listen address overrides added by the test
    workdir: Path
    cwd: Path
    group: ProcessGroup
    ingest_port: int
    rtsp_port: int
    api_port: int
    metrics_port: int
    switch_argv: list[str] | None = None  # the backup switch sidecar, as rendered
    state_port: int = 0  # its GET /v1/state, on loopback
    monitor_argv: list[str] | None = None  # the confidence monitor sidecar, as rendered
    monitor_port: int = 0  # its HTTP endpoints, on loopback
    monitor: ManagedProcess | None = None
    mediamtx: MediaMTX | None = None
    switch: ManagedProcess | None = None
    starts: int = 0

    @property
    def name(self) -> str:
        return self.model.metadata.name

    @property
    def protocol(self) -> str:
        return self.model.spec.protocol

    @property
    def effective_config(self) -> dict[str, Any]:
        cfg = yaml.safe_load(self.config_text)
        cfg.update(
            apiAddress=f"{LOOPBACK}:{self.api_port}",
            metricsAddress=f"{LOOPBACK}:{self.metrics_port}",
            rtspAddress=f"{LOOPBACK}:{self.rtsp_port}",
        )
        for ingest in self.ingests:
            if ingest.protocol in ("srt", "rtmp"):
                cfg[f"{ingest.protocol}Address"] = f"{LOOPBACK}:{ingest.port}"
        return cfg

    @property
    def ingests(self) -> list[render.Ingest]:
        return render.ingests(self.model, self.ingest_port)

    def start(self, timeout: float = 15.0) -> MediaMTX:
        """Start (or start again, after ``stop``) the router, exactly as rendered."""
        self.starts += 1
        name = f"router-{self.name}" if self.starts == 1 else f"router-{self.name}-{self.starts}"
        self.mediamtx = media.launch_mediamtx(
            self.config_path,
            self.effective_config,
            self.cwd,
            env={**self.env, **self.overrides},
            group=self.group,
            name=name,
            timeout=timeout,
            binary=Path(self.argv[0]),
            auth=(self.plan.credentials.api_user, self.plan.credentials.api_password),
        )
        if self.switch_argv:
            self.switch = self.group.start(f"switch-{self.name}-{self.starts}", self.switch_argv)
        if self.monitor_argv:
            self.monitor = self.group.start(f"monitor-{self.name}-{self.starts}", self.monitor_argv)
        return self.mediamtx

    @property
    def process(self) -> ManagedProcess:
        assert self.mediamtx is not None, "router not started"
        return self.mediamtx.process

    def on_air(self) -> str | None:
        """What the backup switch says is on air (its state endpoint, read with the
        operator's credential as the health poll does); None while it cannot say."""
        creds = self.plan.credentials
        try:
            return switch_state.fetch(LOOPBACK, self.state_port, creds.api_user, creds.api_password).on_air
        except switch_state.SwitchStateError:
            return None

    def switch_state(self) -> switch_state.SwitchState:
        creds = self.plan.credentials
        return switch_state.fetch(LOOPBACK, self.state_port, creds.api_user, creds.api_password)

    def monitor_get(self, path: str) -> tuple[int, bytes]:
        """GET one of the confidence monitor's endpoints with the operator's credential."""
        return confidence.get(LOOPBACK, self.monitor_port, path, self.plan.credentials.api_user,
                              self.plan.credentials.api_password)  # fmt: skip

    def monitor_state(self) -> confidence.ConfidenceState | None:
        """What the confidence monitor says (as the operator reads it); None while it
        does not answer."""
        creds = self.plan.credentials
        try:
            return confidence.fetch(LOOPBACK, self.monitor_port, creds.api_user, creds.api_password)
        except confidence.ConfidenceError:
            return None

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop(grace=5)
        if self.switch is not None:
            self.switch.stop(grace=5)
        if self.mediamtx is not None:
            self.mediamtx.stop()

    def ingest_url(
        self, passphrase: str | None = None, role: str = "primary", publisher: credentials.Publisher | None = None
    ) -> str:
        """Where the test source publishes, in the form ``render.ingest_url`` gives
        encoders, with the input's publisher credential (or `publisher`) and the SRT
        passphrase when one is asked for."""
        ingest = next(i for i in self.ingests if i.role == role)
        port = self.rtsp_port if ingest.protocol == "rtsp" else ingest.port
        url = render.ingest_url(ingest.protocol, LOOPBACK, port, ingest.path, publisher or self.plan.publisher)
        if ingest.protocol == "srt":
            url += "&pkt_size=1316"
            if passphrase:
                url += f"&passphrase={passphrase}"
        return url

    def read_url(self, with_credential: bool = True) -> str:
        """The readers' path, as an output pod reads it (with the read credential)."""
        creds = self.plan.credentials
        userinfo = f"{creds.read_user}:{creds.read_password}@" if with_credential else ""
        return f"rtsp://{userinfo}{LOOPBACK}:{self.rtsp_port}/{self.name}"

    def wait_ready(self, timeout: float = 20.0) -> media.PathSample:
        assert self.mediamtx is not None
        return self.mediamtx.wait_path_ready(self.name, timeout)

    def files_written(self) -> list[str]:
        """Files MediaMTX created in its working directory (it should create none)."""
        return sorted(str(p.relative_to(self.cwd)) for p in self.cwd.rglob("*"))


def prepare_input(
    inp: StreamInput,
    workdir: Path,
    *,
    secrets: Secrets | None = None,
    group: ProcessGroup,
    settings: Settings = SETTINGS,
    configmaps: ConfigMaps | None = None,
) -> RenderedInput:
    """Render ``inp`` and lay out its ConfigMap as the volume mount would; start it
    with ``.start()``.

    The ingest port given to the renderer is a free loopback port of the ingest's
    transport, so the rendered config is run unchanged: for UDP the path source
    ``udp+mpegts://0.0.0.0:<port>`` is in the config itself.
    """
    protocol = inp.spec.protocol
    ingest_port = media.free_udp_port() if protocol in ("udp", "srt") else media.free_tcp_port()
    secrets = dict(secrets or {})
    plan = router_plan(inp, secrets)
    docs = render.render_input(inp, ingest_port, settings, plan)
    credentials_secret = _only(docs, "Secret")
    secrets[credentials_secret["metadata"]["name"]] = credentials_secret["stringData"]
    _ROUTER_SECRETS[(inp.metadata.namespace, inp.metadata.name)] = credentials_secret["stringData"]
    configmap = _only(docs, "ConfigMap")
    deployment = _only(docs, "Deployment")
    pod_spec = deployment["spec"]["template"]["spec"]
    container, *sidecars = pod_spec["containers"]
    expected = (["switch"] if inp.spec.backup else []) + (["monitor"] if settings.confidence_monitor else [])
    assert [c["name"] for c in sidecars] == expected
    monitor_spec = next((c for c in sidecars if c["name"] == "monitor"), None)
    sidecars = [c for c in sidecars if c["name"] == "switch"]

    # the ConfigMap, mounted where the Deployment mounts it
    workdir = Path(workdir)
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts") or []}
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    mount_dirs: dict[str, Path] = {}
    for vol_name, mount_path in mounts.items():
        cm_name = (volumes[vol_name].get("configMap") or {}).get("name")
        assert cm_name == configmap["metadata"]["name"], f"volume {vol_name} is not the rendered ConfigMap"
        local = workdir / "mounts" / mount_path.strip("/")
        local.mkdir(parents=True, exist_ok=True)
        for key, text in configmap["data"].items():
            (local / key).write_text(text)
        mount_dirs[mount_path.rstrip("/") + "/"] = local
    config_text = configmap["data"]["mediamtx.yml"]

    # the container's argv: the image's entrypoint is the mediamtx binary
    assert "command" not in container, "the official image's entrypoint runs mediamtx"
    args = []
    for arg in container.get("args") or []:
        for prefix, local in mount_dirs.items():
            if arg.startswith(prefix):
                arg = str(local / arg[len(prefix) :])
        args.append(arg)
    binary = media.mediamtx_binary()
    if binary is None:
        raise FileNotFoundError("mediamtx not built: run hack/build-mediamtx.sh")
    (config_arg,) = args
    config_path = Path(config_arg)
    assert config_path.read_text() == config_text

    env = resolve_env(container, secrets)
    # Every env value is a MediaMTX override from the input's own credentials Secret.
    for entry in container.get("env") or []:
        assert entry["name"].startswith("MTX_"), entry
        assert entry["valueFrom"]["secretKeyRef"]["name"] == credentials_secret["metadata"]["name"], entry

    rtsp, api, metrics = media.free_tcp_port(), media.free_tcp_port(), media.free_tcp_port()
    overrides = {
        "MTX_RTSPADDRESS": f"{LOOPBACK}:{rtsp}",
        "MTX_APIADDRESS": f"{LOOPBACK}:{api}",
        "MTX_METRICSADDRESS": f"{LOOPBACK}:{metrics}",
    }
    for ingest in render.ingests(inp, ingest_port):
        if ingest.protocol in ("srt", "rtmp"):
            overrides[f"MTX_{ingest.protocol.upper()}ADDRESS"] = f"{LOOPBACK}:{ingest.port}"
    assert not set(overrides) & set(env)
    switch_argv, state = _switch_argv(sidecars[0], pod_spec, api, rtsp, workdir, configmaps) if sidecars else (None, 0)
    monitor_argv, monitor_port = _monitor_argv(monitor_spec, pod_spec, rtsp, workdir) if monitor_spec else (None, 0)
    return RenderedInput(
        model=inp,
        plan=plan,
        docs=docs,
        config_text=config_text,
        config_path=config_path,
        argv=[str(binary), str(config_path)],
        env=env,
        overrides=overrides,
        workdir=workdir,
        cwd=workdir / "cwd",
        group=group,
        ingest_port=ingest_port,
        rtsp_port=rtsp,
        api_port=api,
        metrics_port=metrics,
        switch_argv=switch_argv,
        state_port=state,
        monitor_argv=monitor_argv,
        monitor_port=monitor_port,
    )


def _switch_argv(
    container: dict[str, Any], pod_spec: dict[str, Any], api: int, rtsp: int, workdir: Path,
    configmaps: ConfigMaps | None,
) -> tuple[list[str], int]:  # fmt: skip
    """The switch sidecar's command + args, run from this checkout's images/ffmpeg, with
    the pod-local MediaMTX addresses moved to the loopback ports the router got here,
    its state endpoint on a free loopback port, and its volumes laid out as the kubelet
    would (the router's ConfigMap, an emptyDir, the slate image's ConfigMap key from
    ``configmaps``; an optional one that is missing is an empty directory)."""
    assert container["command"] == [render.SWITCH_COMMAND], container["command"]
    state = media.free_tcp_port()
    moved = {f"http://127.0.0.1:{render.API_PORT}": f"http://{LOOPBACK}:{api}",
             f"rtsp://127.0.0.1:{render.RTSP_PORT}": f"rtsp://{LOOPBACK}:{rtsp}",
             f":{switch_render.STATE_PORT}": f"{LOOPBACK}:{state}"}  # fmt: skip
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    mounts = {m["mountPath"]: _volume_dir(volumes[m["name"]], workdir, configmaps or {})
              for m in container.get("volumeMounts") or []}  # fmt: skip
    args = []
    for arg in container.get("args") or []:
        arg = moved.get(arg, arg)
        for mount_path, local in mounts.items():
            if arg == mount_path or arg.startswith(mount_path.rstrip("/") + "/"):
                arg = str(local) + arg[len(mount_path.rstrip("/")) :]
                break
        args.append(arg)
    assert set(moved.values()) <= set(args), f"switch args do not name the router's API, RTSP and state: {args}"
    return [sys.executable, str(FFMPEG_IMAGE_DIR / "streamdist_switch.py"), *args], state


def _monitor_argv(container: dict[str, Any], pod_spec: dict[str, Any], rtsp: int, workdir: Path) -> tuple[list[str], int]:
    """The confidence monitor sidecar's command + args, run from this checkout's
    images/ffmpeg: the router's RTSP and its own port moved to loopback ports, the
    router's ConfigMap where the kubelet would mount it."""
    # the sidecar's supervising sh is the pod's business: run the monitor itself here
    assert container["command"][-1] == switch_render.MONITOR_COMMAND, container["command"]
    port = media.free_tcp_port()
    moved = {f"rtsp://127.0.0.1:{render.RTSP_PORT}": f"rtsp://{LOOPBACK}:{rtsp}",
             f":{switch_render.MONITOR_PORT}": f"{LOOPBACK}:{port}"}  # fmt: skip
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    mounts = {m["mountPath"]: _volume_dir(volumes[m["name"]], workdir, {}) for m in container["volumeMounts"]}
    args = []
    for arg in container.get("args") or []:
        arg = moved.get(arg, arg)
        for mount_path, local in mounts.items():
            if arg.startswith(mount_path.rstrip("/") + "/"):
                arg = str(local) + arg[len(mount_path.rstrip("/")) :]
        args.append(arg)
    assert set(moved.values()) <= set(args), f"monitor args do not name the router's RTSP and its port: {args}"
    return [sys.executable, str(FFMPEG_IMAGE_DIR / "streamdist_confidence.py"), *args], port


def _volume_dir(volume: dict[str, Any], workdir: Path, configmaps: ConfigMaps) -> Path:
    """A pod volume as a local directory: ``mounts/config`` (the router's ConfigMap, as
    laid out for MediaMTX), a fresh one for an emptyDir, a ConfigMap's items."""
    if "emptyDir" in volume:
        local = workdir / "volumes" / volume["name"]
        local.mkdir(parents=True, exist_ok=True)
        return local
    source = volume["configMap"]
    if source["name"].endswith("-mediamtx"):
        return workdir / "mounts" / "config"
    local = workdir / "volumes" / volume["name"]
    local.mkdir(parents=True, exist_ok=True)
    data = configmaps.get(source["name"])
    if data is None:
        assert source.get("optional"), f"ConfigMap {source['name']} not given to the test and not optional"
        return local
    for item in source.get("items") or [{"key": k, "path": k} for k in data]:
        if item["key"] in data:
            value = data[item["key"]]
            (local / item["path"]).write_bytes(value if isinstance(value, bytes) else value.encode())
    return local


def start_input(inp: StreamInput, workdir: Path, **kw: Any) -> RenderedInput:
    """``prepare_input`` (same arguments), then ``.start()``."""
    router = prepare_input(inp, workdir, **kw)
    router.start()
    return router


def audio_tracks(sample: media.PathSample | None) -> tuple[str, ...]:
    """The audio codecs the operator would pass in ``OutputPlan.input_audio``: the
    input status' tracks (MediaMTX's names) minus video (handlers.outputs)."""
    from streamdist.output_plan import audio_tracks as planned_audio

    tracks = list(sample.tracks) if sample and sample.ready else []
    return planned_audio({"tracks": tracks})


# -------------------------------------------------------------------------- outputs


def make_output(
    name: str,
    input_name: str,
    *,
    url: str | None = None,
    secret_ref: tuple[str, str] | None = None,
    namespace: str = NAMESPACE,
    ca_config_map: tuple[str, str] | None = None,
    insecure_skip_verify: bool = False,
) -> StreamOutput:
    """A StreamOutput; `ca_config_map` (name, key) is its spec.tls.caFrom (RTMPS)."""
    spec: dict[str, Any] = {"input": input_name}
    if ca_config_map is not None:
        spec["tls"] = {"caFrom": {"configMapKeyRef": {"name": ca_config_map[0], "key": ca_config_map[1]}}}
    if insecure_skip_verify:
        spec["tls"] = {"insecureSkipVerify": True}
    if url is not None:
        spec["url"] = url
    if secret_ref is not None:
        spec["urlFrom"] = {"secretKeyRef": {"name": secret_ref[0], "key": secret_ref[1]}}
    return parse_output({"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"}, "spec": spec})


@dataclass
class ExitRecord:
    """One exit of an output's process, as the cluster and the operator see it."""

    started: float
    exited: float
    returncode: int
    stderr_line: str  # status.one_line_error of FFmpeg's whole stderr
    message: str  # the termination message: the log tail on failure, nothing on exit 0
    reported: str  # status.last_error: what the operator puts into status.lastError

    @property
    def ran_for(self) -> float:
        return self.exited - self.started


@dataclass
class RenderedOutput:
    """One StreamOutput's FFmpeg, from its rendered Pod."""

    model: StreamOutput
    plan: render.OutputPlan
    docs: list[dict[str, Any]]
    argv: list[str]  # exactly what runs
    env: dict[str, str]  # the container's env, resolved
    group: ProcessGroup
    metrics_port: int = 0  # where the entrypoint serves /metrics here (the pod's TELEMETRY_PORT)
    process: ManagedProcess | None = None
    runs: list[ManagedProcess] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.model.metadata.name

    def metrics_text(self, timeout: float = 2.0) -> str:
        """The pod's GET /metrics, as Prometheus and the operator read it."""
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.metrics_port}/metrics", timeout=timeout) as resp:
            return str(resp.read().decode())

    def metrics(self) -> dict[str, float]:
        """The pod's metrics by name (the exposition holds no labels)."""
        from streamdist.telemetry import parse_exposition

        return parse_exposition(self.metrics_text())

    @property
    def pod(self) -> dict[str, Any]:
        return _only(self.docs, "Pod")

    @property
    def destination(self) -> urls.Destination:
        return self.plan.destination

    def start(self) -> ManagedProcess:
        """Start the container's process (again: a kubelet restart runs the same argv)."""
        name = f"ffmpeg-{self.name}" if not self.runs else f"ffmpeg-{self.name}-{len(self.runs)}"
        # the image's entrypoint (command[0]) from this checkout, in front of Debian's ffmpeg
        path = f"{FFMPEG_IMAGE_DIR}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
        self.process = self.group.start(name, self.argv, env={**self.env, "PATH": path})
        self.runs.append(self.process)
        return self.process

    def exit_record(self, proc: ManagedProcess | None = None) -> ExitRecord:
        proc = proc or self.process
        assert proc is not None and proc.returncode is not None, "process has not exited"
        wait_for_reap(proc)
        log = proc.log_text()
        rc = proc.returncode
        # FallbackToLogsOnError: the log tail becomes the message only when the container failed
        message = termination_message(log) if rc != 0 else ""
        reported = last_error(PodView(name=self.name, last_message=message, last_exit_code=rc))
        exited = proc.exited_at or time.monotonic()
        return ExitRecord(proc.started_at, exited, rc, one_line_error(log), message, reported)

    def stderr_line(self) -> str:
        """One masked line of the current process's stderr so far (for messages)."""
        proc = self.process
        return one_line_error(proc.log_text()) if proc else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=3)


def udp_recorded_output(
    router: RenderedInput, recording: Path, *, group: ProcessGroup, query: str = "?pkt_size=1316"
) -> RenderedOutput:
    """An output "rx" of the router's input "cam" to a UDP recorder on this host, which
    writes what arrives to ``recording``; the output is prepared, not started."""
    port = media.free_udp_port()
    media.start_udp_recorder(port, recording, group=group)
    return prepare_output(
        make_output("rx", "cam", url=f"udp://{media.LOOPBACK}:{port}{query}"), router_rtsp_port=router.rtsp_port,
        group=group,
    )


def prepare_output(
    out: StreamOutput,
    *,
    router_rtsp_port: int,
    secrets: Secrets | None = None,
    config_maps: Secrets | None = None,
    input_audio: tuple[str, ...] = (),
    group: ProcessGroup,
    settings: Settings = SETTINGS,
) -> RenderedOutput:
    """Render ``out`` (destination resolved from its url or Secret, as the operator
    does) and turn its Pod into an argv and env. Start it with ``.start()``.
    ConfigMap volumes are laid out from ``config_maps`` as the kubelet mounts them."""
    secrets = {render.credentials_secret_name(out.spec.input): _ROUTER_SECRETS.get(
        (out.metadata.namespace, out.spec.input), {}), **(secrets or {})}
    if out.spec.url_from is not None:
        ref = out.spec.url_from.secret_key_ref
        raw_url = secrets[ref.name][ref.key]
    else:
        assert out.spec.url is not None
        raw_url = out.spec.url
    plan = render.OutputPlan(destination=urls.parse(raw_url), input_audio=input_audio)
    docs = render.render_output(out, plan, settings)
    pod = _only(docs, "Pod")
    (container,) = pod["spec"]["containers"]
    env = resolve_env(container, secrets)
    plain = {render.MASKED_DESTINATION_ENV, render.READ_USER_ENV, render.READ_PASSWORD_ENV, render.INPUT_ADDRESS_ENV,
             render.TELEMETRY_ENV}
    assert set(env) == (plain | {render.DESTINATION_ENV} if out.spec.url_from is not None else plain), env
    argv = [k8s_expand(a, env) for a in [*container["command"], *container.get("args", [])]]
    argv = _mount_config_maps(pod, container, argv, config_maps or {})

    service = f"{out.spec.input}.{out.metadata.namespace}.svc:{render.RTSP_PORT}"
    hits = [i for i, a in enumerate(argv) if service in a]
    assert len(hits) == 1, f"expected the input service {service} once in {argv}"
    argv[hits[0]] = argv[hits[0]].replace(service, f"{LOOPBACK}:{router_rtsp_port}")
    assert env[render.INPUT_ADDRESS_ENV] == service
    env[render.INPUT_ADDRESS_ENV] = f"{LOOPBACK}:{router_rtsp_port}"
    # the pod's metrics port, moved to a free loopback port (parallel tests)
    assert env[render.TELEMETRY_ENV] == f"0.0.0.0:{render.TELEMETRY_PORT}"
    metrics_port = media.free_tcp_port()
    env[render.TELEMETRY_ENV] = f"{LOOPBACK}:{metrics_port}"
    assert argv[-1] == raw_url, "the destination reaches the entrypoint as its last argv element"
    return RenderedOutput(model=out, plan=plan, docs=copy.deepcopy(docs), argv=argv, env=env, group=group,
                          metrics_port=metrics_port)


def _mount_config_maps(pod: dict[str, Any], container: dict[str, Any], argv: list[str],
                       config_maps: Secrets) -> list[str]:  # fmt: skip
    """ConfigMap volumes written to a local directory (the items they select), and the
    mount paths in argv pointed at it."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        source = volumes[mount["name"]]["configMap"]
        data = config_maps[source["name"]]
        local = Path(tempfile.mkdtemp(prefix="streamdist-mount-"))
        for item in source.get("items") or [{"key": k, "path": k} for k in data]:
            (local / item["path"]).write_text(data[item["key"]])
        prefix = mount["mountPath"].rstrip("/") + "/"
        argv = [str(local / a[len(prefix):]) if a.startswith(prefix) else a for a in argv]
    return argv


# -------------------------------------------------------------------------- kubelet


class KubeletLoop:
    """``restartPolicy: Always`` for one output: when its process exits, the exit is
    recorded and the same argv starts again after ``delay_after(exits so far)`` seconds
    (here a fixed ``backoff``: the kubelet's starts at 10 s and doubles, the tests use a
    short fixed delay; the recovery benchmark gives it the spec's doubling)."""

    def __init__(self, output: RenderedOutput, backoff: float = 1.0, poll: float = 0.05) -> None:
        self.output = output
        self.backoff = backoff
        self.poll = poll
        self.exits: list[ExitRecord] = []
        self.starts: list[float] = []  # monotonic time of every start
        self.next_start: float | None = None  # when the pending restart is due
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"kubelet-{output.name}", daemon=True)

    def delay_after(self, failures: int) -> float:
        """Seconds from the ``failures``-th exit to the next start."""
        return self.backoff

    def start(self) -> KubeletLoop:
        self._start_output()
        self._thread.start()
        return self

    def _start_output(self) -> None:
        self.starts.append(time.monotonic())
        self.output.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            proc = self.output.process
            assert proc is not None
            if proc.alive():
                time.sleep(self.poll)
                continue
            record = self.output.exit_record(proc)
            with self._lock:
                self.exits.append(record)
                self.next_start = record.exited + self.delay_after(len(self.exits))
            if self._stop.wait(max(0.0, self.next_start - time.monotonic())):
                return
            with self._lock:
                if not self._stop.is_set():
                    self._start_output()

    @property
    def restarts(self) -> int:
        return len(self.exits)

    def exits_since(self, t: float) -> list[ExitRecord]:
        with self._lock:
            return [e for e in self.exits if e.exited >= t]

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
        self._thread.join(timeout=5)
        self.output.stop()


def wait_for_reap(proc: ManagedProcess, timeout: float = 2.0) -> None:
    """``exited_at`` is set by a reaper thread just after the exit: let it."""
    with contextlib.suppress(TimeoutError):
        wait_for("the reaper thread", lambda: proc.exited_at is not None, timeout, 0.005)


def watch_exit(proc: ManagedProcess, since: float, timeout: float) -> float | None:
    """Seconds from ``since`` until ``proc`` exited, or None if it is still running
    ``timeout`` seconds after ``since``."""
    try:
        proc.popen.wait(timeout=max(0.0, since + timeout - time.monotonic()))
    except Exception:
        return None
    wait_for_reap(proc)
    assert proc.exited_at is not None
    return proc.exited_at - since
