"""`streamdist render` on every example prints valid manifests and no secret."""

import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from streamdist.cli import main, render_files
from streamdist.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.yaml") if "argocd" not in p.parts)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_render_every_example(path):
    files = [path]
    # outputs need their input's namespace to make sense; render each with the inputs
    if "outputs" in path.parts:
        files.append(ROOT / "examples" / "inputs" / "udp.yaml")
    out = io.StringIO()
    assert render_files(files, Settings(), out) == 0
    docs = [d for d in yaml.safe_load_all(out.getvalue()) if d]
    assert docs, "nothing rendered"
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
    assert "abcd-efgh-ijkl-mnop-qrst" not in out.getvalue()


def test_render_demo_set_via_console_script():
    result = subprocess.run(
        [sys.executable, "-m", "streamdist.cli", "render", "-f", str(ROOT / "examples" / "demo")],
        capture_output=True, text=True, check=True,
    )
    kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout) if d]
    assert kinds.count("Pod") == 3
    assert kinds.count("Deployment") == 1
    assert "mediamtx.yml: |" in result.stdout


def test_render_reports_bad_spec(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: streamdist.io/v1alpha1\nkind: StreamOutput\nmetadata: {name: x}\n"
                   "spec: {input: a, url: 'http://nope'}\n")
    assert main(["render", "-f", str(bad)]) == 1
    assert "scheme must be one of" in capsys.readouterr().err


SECRET = "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}{labels}}}\ntype: Opaque\nstringData: {{{data}}}\n---\n"
RTMP_INPUT = ("apiVersion: streamdist.io/v1alpha1\nkind: StreamInput\nmetadata: {name: cam}\n"
              "spec: {protocol: rtmp, publishSecretRef: {name: pub, key: credential}}\n")
KEYED_OUTPUT = ("---\napiVersion: streamdist.io/v1alpha1\nkind: StreamOutput\nmetadata: {name: yt}\n"
                "spec: {input: cam, urlFrom: {secretKeyRef: {name: yt, key: url}}}\n")


@pytest.mark.parametrize(("label", "ok"), [("", False), (", labels: {streamdist.io/secret-usage: destination}", False),
                                           (", labels: {streamdist.io/secret-usage: publish}", True)])
def test_render_uses_a_secret_only_when_it_opted_in(tmp_path, capsys, label, ok):
    path = tmp_path / "in.yaml"
    path.write_text(SECRET.format(name="pub", labels=label, data="credential: 'enc:RenderCanary123'") + RTMP_INPUT)
    out = io.StringIO()
    assert render_files([path], Settings(), out) == (0 if ok else 1)
    if not ok:
        err = capsys.readouterr().err
        assert "SecretNotAllowed" in err and "streamdist.io/secret-usage=publish" in err and "RenderCanary" not in err
        return
    assert "RenderCanary123" not in out.getvalue(), "render never prints a Secret's value"
    (secret,) = [d for d in yaml.safe_load_all(out.getvalue()) if d and d["kind"] == "Secret"]
    assert set(secret["stringData"].values()) == {"<set by the operator>"}


def test_render_refuses_a_destination_secret_without_its_label(tmp_path, capsys):
    path = tmp_path / "out.yaml"
    path.write_text(SECRET.format(name="pub", labels=", labels: {streamdist.io/secret-usage: publish}",
                                  data="credential: 'enc:longenough1'")
                    + SECRET.format(name="yt", labels="", data="url: 'rtmp://h.example/app/RenderKey42'")
                    + RTMP_INPUT + KEYED_OUTPUT)
    assert render_files([path], Settings(), io.StringIO()) == 1
    err = capsys.readouterr().err
    assert "spec.urlFrom.secretKeyRef" in err and "RenderKey42" not in err
