#!/usr/bin/env python3
"""Reads a Dockerfile for hack/build-images.sh, so that the image it builds without an
image builder is the Dockerfile's exact equivalent and cannot drift from it.

    dockerfile.py Dockerfile --copies STAGE   # the sources COPY takes from the context in STAGE
    dockerfile.py Dockerfile --oci-args       # the final stage's ENTRYPOINT, CMD, USER, ENV,
                                              # EXPOSE, LABEL and WORKDIR as hack/node/oci.py flags
    dockerfile.py Dockerfile --json           # every stage, parsed

Only what these Dockerfiles use is understood: ARG with defaults, FROM ... [AS name],
instructions continued with a trailing backslash, JSON-form ENTRYPOINT/CMD, and
`K=V` pairs in ENV and LABEL (values may be quoted; `$VAR`/`${VAR}` expand from the
earlier ENVs of the stage, else from the base's environment given by --base-env).
Anything else it does not understand is an error, never silently skipped.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

# The environment of the base both images start from (Debian's default PATH).
DEBIAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
KNOWN = {"ARG", "FROM", "ENV", "WORKDIR", "COPY", "RUN", "LABEL", "USER", "EXPOSE", "ENTRYPOINT", "CMD"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) pairs, continuations joined, comments and blanks dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        if word.upper() not in KNOWN:
            raise ValueError(f"unsupported Dockerfile instruction: {word}")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def _pairs(rest: str, env: dict[str, str]) -> dict[str, str]:
    out = {}
    for word in shlex.split(rest):
        key, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"only KEY=VALUE pairs are understood, not {word!r}")
        out[key] = _expand(value, {**env, **out})
    return out


def stages(text: str, base_env: dict[str, str]) -> list[dict[str, Any]]:
    """Each stage: name, from, copies (context sources), env, and the final config."""
    args: dict[str, str] = {}
    result: list[dict[str, Any]] = []
    st: dict[str, Any] | None = None
    for word, rest in instructions(text):
        if word == "ARG" and st is None:
            key, _, default = rest.partition("=")
            args[key] = default
            continue
        if word == "FROM":
            parts = rest.split()
            st = {"from": _expand(parts[0], args), "name": parts[2] if len(parts) == 3 else "", "copies": [],
                  "env": dict(base_env), "config_env": {}, "labels": {}, "expose": [], "user": "",
                  "entrypoint": None, "cmd": None, "workdir": "/", "runs": []}  # fmt: skip
            result.append(st)
            continue
        if st is None:
            raise ValueError(f"{word} before FROM")
        _apply(st, word, rest)
    return result


def _apply(st: dict[str, Any], word: str, rest: str) -> None:
    if word == "ENV":
        pairs = _pairs(rest, st["env"])
        st["env"].update(pairs)
        st["config_env"].update(pairs)
    elif word == "LABEL":
        st["labels"].update(_pairs(rest, st["env"]))
    elif word == "COPY":
        words = [w for w in shlex.split(rest) if not w.startswith("--")]
        if not any(w.startswith("--from=") for w in shlex.split(rest)):
            st["copies"] += words[:-1]
    elif word == "EXPOSE":
        st["expose"] += [p if "/" in p else f"{p}/tcp" for p in rest.split()]
    elif word == "USER":
        st["user"] = rest
    elif word in ("ENTRYPOINT", "CMD"):
        st[word.lower()] = json.loads(rest)
    elif word == "WORKDIR":
        st["workdir"] = rest
    elif word == "RUN":
        st["runs"].append(rest)


def oci_args(final: dict[str, Any]) -> list[str]:
    """hack/node/oci.py flags giving an image the final stage's run-time config."""
    env = {**DEBIAN_ENV, **final["config_env"]}
    out = [f"--env={k}={v}" for k, v in env.items()]
    out += [f"--label={k}={v}" for k, v in final["labels"].items()]
    out += [f"--expose={p}" for p in final["expose"]]
    if final["user"]:
        out.append(f"--user={final['user']}")
    if final["entrypoint"] is not None:
        out.append(f"--entrypoint={json.dumps(final['entrypoint'])}")
    if final["cmd"] is not None:
        out.append(f"--cmd={json.dumps(final['cmd'])}")
    out.append(f"--workdir={final['workdir']}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dockerfile.py")
    ap.add_argument("dockerfile", type=Path)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--copies", metavar="STAGE")
    mode.add_argument("--oci-args", action="store_true")
    mode.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    parsed = stages(a.dockerfile.read_text(), DEBIAN_ENV)
    if a.json:
        print(json.dumps(parsed, indent=1))
    elif a.oci_args:
        print("\n".join(oci_args(parsed[-1])))
    else:
        (stage,) = [s for s in parsed if s["name"] == a.copies] or [None]
        if stage is None:
            raise SystemExit(f"no stage named {a.copies!r} in {a.dockerfile}")
        print("\n".join(c.rstrip("/") for c in stage["copies"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
