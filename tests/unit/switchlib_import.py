"""Import the backup switch's modules (images/ffmpeg, stdlib only, not a package of
streamdist) the way the image runs them: its directory on the path (pytest's pythonpath,
pyproject.toml)."""

import importlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SWITCH_DIR = REPO / "images" / "ffmpeg"
SWITCH = SWITCH_DIR / "streamdist_switch.py"

sw = importlib.import_module("streamdist_switch")
ts = importlib.import_module("switchlib.ts")
splice = importlib.import_module("switchlib.splice")
slate = importlib.import_module("switchlib.slate")
net = importlib.import_module("switchlib.net")
