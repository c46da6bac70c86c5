"""Bad specs are rejected at `kubectl apply` by the CRD schema or its CEL rules."""

from pathlib import Path

import pytest

INVALID = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))


def _expect(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: ")
    return first.removeprefix("# expect: ")


def test_at_least_fifteen_cases():
    assert len(INVALID) >= 15


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_rejected_with_message(control_plane, ns, path):
    result = control_plane.kubectl("apply", "-n", ns, "-f", str(path), check=False)
    assert result.returncode != 0, f"{path.name} was accepted"
    assert _expect(path) in result.stderr, result.stderr
    kind = "si" if "kind: StreamInput" in path.read_text() else "so"
    assert control_plane.kubectl_json("get", kind, "-n", ns)["items"] == []


def test_spec_input_is_immutable(control_plane, ns):
    so = ("apiVersion: streamdist.io/v1alpha1\nkind: StreamOutput\nmetadata: {name: o}\n"
          "spec: {input: %s, url: 'udp://h.example:5000'}\n")
    control_plane.kubectl("apply", "-n", ns, "-f", "-", input=so % "cam-a")
    result = control_plane.kubectl("apply", "-n", ns, "-f", "-", input=so % "cam-b", check=False)
    assert result.returncode != 0
    assert "spec.input is immutable" in result.stderr


def test_defaults_are_applied(control_plane, ns):
    control_plane.kubectl("apply", "-n", ns, "-f", "-", input=(
        "apiVersion: streamdist.io/v1alpha1\nkind: StreamInput\nmetadata: {name: d}\nspec: {}\n---\n"
        "apiVersion: streamdist.io/v1alpha1\nkind: StreamOutput\nmetadata: {name: d}\n"
        "spec: {input: d, url: 'udp://h.example:5000'}\n"))
    si = control_plane.kubectl_json("get", "si", "d", "-n", ns)["spec"]
    so = control_plane.kubectl_json("get", "so", "d", "-n", ns)["spec"]
    assert si == {"protocol": "udp", "maxOutputs": 20, "service": {"type": "ClusterIP"}}
    assert so["reconnect"] == {"delaySeconds": 2, "maxDelaySeconds": 30}
    assert so["suspend"] is False and so["service"] == {"type": "ClusterIP"}
