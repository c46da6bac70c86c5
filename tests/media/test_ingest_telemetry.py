"""What an input's router reports about its ingest, read as the operator reads it, on real parts.

* an SRT publisher (FFmpeg) on loopback to the router rendered for an SRT StreamInput: the
  path's tracks with their details, no frame in error, the publisher's link statistics
  (MediaMTX's /v3/srtconns/get/{id}) clean, Degraded False;
* the operator's own health poll (handlers.health.poll) against that router, then
  plan_input: status.ingest and Degraded as the operator would write them;
* under impairment: the publisher sends from inside a network namespace the test creates,
  through 60 ms of added delay (a delaying UDP relay on this side: this kernel has no netem)
  and 2 % loss (iptables' statistic match in the namespace, data direction only): the RTT
  and the loss the router's SRT receiver reports, as streamdist.ingest summarises them,
  match what was imposed; Degraded (PacketLoss) appears, and clears once the loss is gone.

With ``STREAMDIST_UPDATE_FIXTURES=1`` the real responses seen here are written to
tests/fixtures/mediamtx/, which tests/unit/test_ingest.py parses.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from streamdist import ingest
from streamdist.handlers import context, health
from streamdist.handlers.memory import Applied, InputKey
from streamdist.input_plan import SeenInput, plan_input
from streamdist.mediamtx import MediaMTXClient
from streamdist.settings import Settings
from streamdist_dev import impair, media, rendered

pytestmark = pytest.mark.media

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "mediamtx"
UPDATE = os.environ.get("STREAMDIST_UPDATE_FIXTURES") == "1"
DELAY_MS = 60.0
LOSS = 0.02
FLOW_TIMEOUT = 30.0


def _save(name: str, doc: object) -> None:
    """Write a real API response as a fixture (only when asked to)."""
    if UPDATE:
        (FIXTURES / name).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _read(api: MediaMTXClient, name: str, previous: ingest.Reading | None = None) -> ingest.Reading:
    """One look at the ingest, as the health poll takes it (handlers.health._ingest)."""
    path = api.path(name)
    assert path is not None and path.online, path
    readers = api.readers_of(path) if path.readers else []
    link = api.srt_conn(path.source_id) if path.source_type == "srtConn" and path.source_id else None
    return ingest.read(previous, ingest.sample(path, readers, link))


def test_an_srt_ingest_on_loopback_is_clean_with_its_tracks(tmp_path: Path, group: media.ProcessGroup) -> None:
    router = rendered.start_input(rendered.make_input("cam", "srt"), tmp_path / "router", group=group)
    media.start_source("srt", router.ingest_url(), group=group, name="source", video_bitrate="3000k")
    router.wait_ready(FLOW_TIMEOUT)
    api = router.mediamtx.api()  # type: ignore[union-attr]
    first = _read(api, "cam")
    time.sleep(5)
    now = _read(api, "cam", first)
    _save("paths_list_srt_publisher.json", api.get_json("/v3/paths/list"))
    _save("srtconns_list_publisher.json", api.get_json("/v3/srtconns/list"))
    summary = now.summary
    assert summary.srt and summary.rtt_ms is not None and summary.rtt_ms < 20, summary  # loopback
    assert summary.loss_percent == 0.0 and summary.retransmitted_percent == 0.0, summary
    assert summary.frames_in_error == 0 and not summary.new_frames_in_error
    assert [ingest.track_status(t) for t in summary.tracks] == [
        {"codec": "H264", "width": 640, "height": 360, "profile": "Baseline", "level": "3"},
        {"codec": "MPEG-4 Audio", "sampleRate": 48000, "channelCount": 2},
    ]
    assert ingest.degraded(summary, True).reason == "Nominal"
    fields = ingest.status_fields({}, summary)["ingest"]
    assert ingest.status_fields({"ingest": fields}, _read(api, "cam", now).summary)["ingest"] == fields


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces, veth and iptables need root")
def test_an_impaired_srt_ingest_is_measured_and_degraded_comes_and_goes(
    tmp_path: Path, group: media.ProcessGroup, media_report
) -> None:  # fmt: skip
    router = rendered.start_input(rendered.make_input("cam", "srt"), tmp_path / "router", group=group)
    api = router.mediamtx.api()  # type: ignore[union-attr]
    with impair.link() as link:
        relay_port = 42000 + os.getpid() % 1000
        impair.start_relay(link, relay_port, router.ingest_port, DELAY_MS, group, inside=False)
        url = router.ingest_url().replace(f"{media.LOOPBACK}:{router.ingest_port}", f"{link.near}:{relay_port}")
        argv = [*media.FFMPEG, *media.pattern_args(video_bitrate="3000k"),
                *media.source_output_args("srt", url + "&latency=600000")]  # fmt: skip
        group.start("source", link.ns(*argv))
        router.wait_ready(FLOW_TIMEOUT)
        time.sleep(3)  # RTT settles

        link.drop(relay_port, LOSS, chain="OUTPUT")
        before, dropped_before = _read(api, "cam"), link.dropped("OUTPUT")
        time.sleep(25)
        lossy, dropped = _read(api, "cam", before), link.dropped("OUTPUT") - dropped_before
        _save("path_get_srt_publisher_lossy.json", api.get_json("/v3/paths/get/cam"))
        _save("srtconns_get_publisher_lossy.json", api.get_json(f"/v3/srtconns/get/{lossy.sample.link.id}"))  # type: ignore[union-attr]
        summary = lossy.summary
        old, new = before.sample.link, lossy.sample.link
        assert old is not None and new is not None
        received = new.received - old.received
        report = (f"SRT ingest impaired: {DELAY_MS:.0f} ms delay, {LOSS:.0%} loss imposed; the router's receiver: "
                  f"RTT {summary.rtt_ms:.1f} ms, loss {summary.loss_percent:.2f} %, resent "
                  f"{summary.retransmitted_percent:.2f} % ({new.lost - old.lost} lost, "
                  f"{new.retransmitted - old.retransmitted} resent, {new.dropped - old.dropped} dropped, of "
                  f"{received} received); the kernel dropped {dropped}")  # fmt: skip
        print(report)
        media_report.note(report)
        assert summary.rtt_ms is not None and DELAY_MS - 5 <= summary.rtt_ms <= DELAY_MS + 40, report
        assert summary.loss_percent is not None and 1.0 <= summary.loss_percent <= 3.5, report
        # every packet the kernel dropped (resends included) was found missing or was a lost resend
        assert new.lost - old.lost <= dropped + 5, report
        cond = ingest.degraded(summary, True)
        assert (cond.status, cond.reason) == ("True", "PacketLoss"), report
        fields = ingest.status_fields({}, summary)["ingest"]
        assert 1.0 <= fields["lossPercent"] <= 3.5 and abs(fields["rttMs"] - DELAY_MS) <= 40, fields

        link.heal("OUTPUT")
        time.sleep(3)  # retransmissions of the last losses settle
        healed_from = _read(api, "cam")
        time.sleep(10)
        healed = _read(api, "cam", healed_from).summary
        assert healed.loss_percent is not None and healed.loss_percent < 0.5, healed
        assert ingest.degraded(healed, True).status == "False", healed
        assert healed.frames_in_error == summary.frames_in_error == 0, "600 ms of latency recovers every loss"


def test_the_health_poll_reads_the_ingest_and_plan_input_writes_it(
    tmp_path: Path, group: media.ProcessGroup, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    model = rendered.make_input("cam", "srt")
    router = rendered.start_input(model, tmp_path / "router", group=group)
    media.start_source("srt", router.ingest_url(), group=group, name="source")
    router.wait_ready(FLOW_TIMEOUT)
    monkeypatch.setattr(health.render, "API_PORT", router.api_port)  # the rendered router's API, on loopback
    ctx = context.Context(kube=None, settings=Settings(telemetry=True))  # type: ignore[arg-type]
    body = {"metadata": {"name": "cam", "namespace": model.metadata.namespace, "uid": "uid-cam", "generation": 1},
            "spec": {"protocol": "srt"}}  # fmt: skip
    ctx.idx.inputs = {(model.metadata.namespace, "cam"): [body]}
    key = InputKey(model.metadata.namespace, "cam")
    creds = router.plan.credentials
    applied = Applied("digest", ("srt://cam-ingest:1",), media.LOOPBACK, api_auth=(creds.api_user, creds.api_password))

    def status(previous: dict) -> dict:
        assert health.poll(ctx, key, applied)
        seen = SeenInput(body=body, input=model, port=router.ingest_port, endpoints=applied.endpoints,
                         router_ready=True, observation=ctx.memory.input(key).observation, previous=previous,
                         telemetry=True)  # fmt: skip
        return plan_input(seen).status

    first = status({})
    time.sleep(5)  # one resync period
    second = status(first)
    got = second["ingest"]
    assert got["rttMs"] < 20 and got["lossPercent"] == 0.0 and got["framesInError"] == 0, got
    assert [t["codec"] for t in got["tracks"]] == ["H264", "MPEG-4 Audio"] and got["tracks"][0]["width"] == 640
    degraded = next(c for c in second["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("False", "Nominal")
    time.sleep(5)
    assert status(second)["ingest"] == got, "a steady ingest writes no status"
