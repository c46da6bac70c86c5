"""Port assignment: distinct ports, fixed ports, the earliest claimant wins."""

from streamdist.ports import Assignment, Claim, assign

RANGE = range(20000, 20010)


def test_lowest_free_port():
    claims = [Claim(("ns", "a"), 20000, "1"), Claim(("ns", "b"), 20002, "2")]
    assert assign(None, ("ns", "c"), "3", None, claims, RANGE) == Assignment(20001)


def test_keeps_its_previous_port():
    me = Claim(("ns", "c"), 20005, "3")
    assert assign(me, ("ns", "c"), "3", None, [me, Claim(("ns", "a"), 20000, "1")], RANGE) == Assignment(20005)


def test_ten_inputs_get_ten_ports():
    claims: list[Claim] = []
    for i in range(10):
        got = assign(None, ("ns", f"i{i}"), str(i), None, claims, RANGE)
        claims.append(Claim(("ns", f"i{i}"), got.port, str(i)))
    assert len({c.port for c in claims}) == 10


def test_fixed_port_clash_blames_the_later_one():
    early = Claim(("ns", "early"), 20003, "2026-01-01T00:00:00Z")
    late_created = "2026-01-02T00:00:00Z"
    got = assign(None, ("ns", "late"), late_created, 20003, [early], RANGE)
    assert got == Assignment(None, conflict_with=("ns", "early"))
    # and the earlier one keeps it even when the later one is listed first
    late = Claim(("ns", "late"), 20003, late_created)
    assert assign(early, ("ns", "early"), early.created, 20003, [late, early], RANGE) == Assignment(20003)


def test_dynamic_port_yields_to_a_fixed_claim_made_earlier():
    fixed = Claim(("ns", "fixed"), 20000, "1")
    me = Claim(("ns", "dyn"), 20000, "2")
    assert assign(me, ("ns", "dyn"), "2", None, [fixed, me], RANGE) == Assignment(20001)


def test_range_exhausted():
    claims = [Claim(("ns", str(p)), p, "1") for p in RANGE]
    assert assign(None, ("ns", "x"), "2", None, claims, RANGE) == Assignment(None)
