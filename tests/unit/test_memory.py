"""One memory record per object, keyed by kind: the two defects of the nine kind-less
maps it replaced, as tests. Both failed against those maps (issue 14): deleting input
ns/x wiped the failure count and flow sample of output ns/x; the health poll iterated a
map that reconciles inserted into and raised `dictionary changed size during
iteration`, which skipped a resync tick."""

import threading

from streamdist.handlers import context, health, inputs
from streamdist.handlers.memory import Applied, Flow, InputKey, Memory, OutputKey
from streamdist.settings import Settings


class NoKube:
    """Nothing here may reach the API: every router below has no API host."""


def _ctx():
    return context.Context(kube=NoKube(), settings=Settings())  # type: ignore[arg-type]


def test_deleting_an_input_keeps_the_memory_of_an_output_of_the_same_name():
    ctx = _ctx()
    output = ctx.memory.output(OutputKey("ns", "x"))
    output.failures = 3
    output.flow = Flow(100, 1.0, 1.0, 800)
    ctx.memory.input(InputKey("ns", "x")).port = 20000
    inputs.reconcile(ctx, ("ns", "x"))  # the input is gone from the index: forgotten
    assert ctx.memory.output(OutputKey("ns", "x")).failures == 3
    assert ctx.memory.output(OutputKey("ns", "x")).flow == Flow(100, 1.0, 1.0, 800)
    assert ctx.memory.input(InputKey("ns", "x")).port is None


def test_keys_of_two_kinds_never_meet():
    assert InputKey("ns", "x") != OutputKey("ns", "x")
    memory = Memory()
    memory.input(InputKey("ns", "x")).port = 1
    memory.forget(OutputKey("ns", "x"))
    assert memory.input(InputKey("ns", "x")).port == 1


def test_the_health_poll_reads_memory_while_reconciles_add_inputs():
    ctx = _ctx()
    ctx.settings = Settings(health_poll=True)
    for i in range(200_000):
        ctx.memory.input(InputKey("ns", f"i{i}")).applied = Applied("d", (), "")
    stop = threading.Event()

    def reconciles() -> None:
        i = 0
        while not stop.is_set():
            ctx.memory.input(InputKey("new", f"n{i}")).applied = Applied("d", (), "")
            i += 1

    writer = threading.Thread(target=reconciles)
    writer.start()
    errors = []
    try:
        for _ in range(20):
            try:
                health.poll_all(ctx)
            except RuntimeError as exc:
                errors.append(str(exc))
    finally:
        stop.set()
        writer.join()
    assert not errors, errors[:1]
