"""Import the backup switch's modules (images/ffmpeg, stdlib only, not a package of
streamdist) the way the image runs them: its directory first on sys.path."""

import importlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SWITCH_DIR = REPO / "images" / "ffmpeg"
SWITCH = SWITCH_DIR / "streamdist_switch.py"
if str(SWITCH_DIR) not in sys.path:
    sys.path.insert(0, str(SWITCH_DIR))

sw = importlib.import_module("streamdist_switch")
ts = importlib.import_module("switchlib.ts")
splice = importlib.import_module("switchlib.splice")
slate = importlib.import_module("switchlib.slate")
net = importlib.import_module("switchlib.net")
