"""The backup switch sidecar of a router pod, rendered: its command line, volumes and
the credential file its state endpoint checks (images/ffmpeg/streamdist_switch.py).

Pure, like render: the operator, `streamdist render` and the media harness all run
what this returns.
"""

from __future__ import annotations

import json
from typing import Any

from . import credentials
from .credentials import RouterCredentials
from .models import Fallback, StreamInput

COMMAND = "streamdist-switch"
# GET /v1/state: what is on air and every switch with its gap; the operator's health
# poll reads it with its control-API credential (checked against the hash in the
# router's ConfigMap, mounted at CONFIG_DIR).
STATE_PORT = 9996
# The confidence monitor (images/ffmpeg/streamdist_confidence.py): /metrics,
# /v1/state and /v1/thumbnail.jpg, to the same credential as the switch's state.
MONITOR_COMMAND = "streamdist-confidence"
MONITOR_PORT = 9995
# The monitor is not the feed: if it fails (a bug, an FFmpeg image without it), its
# container must stay up, or the kubelet marks the router pod NotReady and its Service
# drops the input's every reader. So `sh` runs it and starts it again 5 s after it ends,
# one log line each time, and passes SIGTERM on; the operator then sees the monitor
# unreachable (the conditions' Unknown, MonitorUnavailable). Run as
# ``sh -c MONITOR_SUPERVISOR MONITOR_COMMAND ARGS...`` ($0 the command, "$@" its args).
MONITOR_SUPERVISOR = (
    'trap \'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 0\' TERM INT; '
    'while :; do "$0" "$@" & pid=$!; wait "$pid"; '
    'echo "event=monitor-exit code=$? restart_in=5s"; sleep 5 & pid=$!; wait "$pid"; done'
)
CONFIG_DIR = "/config"
CREDENTIAL_KEY = "switch-credential.json"
SLATE_DIR = "/slate"
SLATE_IMAGE = "image"
WORKDIR = "/tmp"  # an emptyDir: the slate's text file (the root filesystem is read-only)
CONFIG_VOLUME = "config"
WORK_VOLUME = "switch-tmp"
IMAGE_VOLUME = "slate-image"
VIDEO_CODECS = {"H264": "h264", "H265": "hevc"}
AUDIO_CODECS = {"MPEG4Audio": "aac", "none": "none"}


def credential_file(creds: RouterCredentials) -> str:
    """What the switch accepts on its state endpoint: the operator's API user and the
    MediaMTX ``sha256:`` hash of its password (no password in any file)."""
    return json.dumps({"user": creds.api_user, "pass": credentials.hashed(creds.api_password)})


def _format_args(slate: Fallback) -> list[str]:
    """The slate's format before any source published (spec.fallback): the codecs
    always, the picture when width and height are named."""
    args = ["--video", VIDEO_CODECS[slate.video], "--audio", AUDIO_CODECS[slate.audio],
            "--sample-rate", str(slate.sample_rate), "--channels", str(slate.channel_count)]  # fmt: skip
    if slate.width and slate.height:
        args += ["--width", str(slate.width), "--height", str(slate.height), "--fps", slate.frame_rate,
                 "--pix-fmt", slate.pixel_format]  # fmt: skip
        if slate.profile:
            args += ["--profile", slate.profile]
    return args


def args(inp: StreamInput, api_port: int, rtsp_port: int) -> list[str]:
    """The switch's argv after its command."""
    backup, slate = inp.spec.backup, inp.spec.slate
    assert backup is not None and slate is not None
    out = [
        "--path", inp.metadata.name,
        "--api", f"http://127.0.0.1:{api_port}",
        "--rtsp", f"rtsp://127.0.0.1:{rtsp_port}",
        "--loss-after-ms", str(backup.loss_after_ms),
        "--state-address", f":{STATE_PORT}",
        "--state-credential", f"{CONFIG_DIR}/{CREDENTIAL_KEY}",
        "--workdir", WORKDIR,
        "--slate-color", slate.color,
        *_format_args(slate),
    ]  # fmt: skip
    if slate.text:
        out += ["--slate-text", slate.text]
    if slate.image_from:
        out += ["--slate-image", f"{SLATE_DIR}/{SLATE_IMAGE}"]
    return out


def container(inp: StreamInput, image: str, api_port: int, rtsp_port: int) -> dict[str, Any] | None:
    """What the Deployment template needs of the sidecar (None without a backup)."""
    if inp.spec.backup is None:
        return None
    mounts = [{"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
              {"name": WORK_VOLUME, "mountPath": WORKDIR}]  # fmt: skip
    if inp.spec.slate and inp.spec.slate.image_from:
        mounts.append({"name": IMAGE_VOLUME, "mountPath": SLATE_DIR, "readOnly": True})
    return {
        "image": image,
        "command": [COMMAND],
        "args": args(inp, api_port, rtsp_port),
        "state_port": STATE_PORT,
        "mounts": mounts,
    }


def volumes(inp: StreamInput) -> list[dict[str, Any]]:
    """The sidecar's volumes beyond the router's config: a small in-memory scratch
    directory, and the slate image's ConfigMap key (optional: a missing one leaves the
    plain colour, the switch logs it)."""
    if inp.spec.backup is None:
        return []
    out: list[dict[str, Any]] = [{"name": WORK_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]
    image = inp.spec.slate.image_from if inp.spec.slate else None
    if image is not None:
        ref = image.config_map_key_ref
        out.append({"name": IMAGE_VOLUME, "configMap": {"name": ref.name, "optional": True,
                                                        "items": [{"key": ref.key, "path": SLATE_IMAGE}]}})  # fmt: skip
    return out


def monitor_args(inp: StreamInput, rtsp_port: int, hold_seconds: float) -> list[str]:
    """The confidence monitor's argv after its command: it reads the readers' path (what
    every output gets: with a backup, the switch's output) on the pod's loopback."""
    return [
        "--path", inp.metadata.name,
        "--rtsp", f"rtsp://127.0.0.1:{rtsp_port}",
        "--listen", f":{MONITOR_PORT}",
        "--credential", f"{CONFIG_DIR}/{CREDENTIAL_KEY}",
        "--hold-seconds", f"{hold_seconds:g}",
    ]  # fmt: skip
