"""stub"""
from .common import Opts, Result
NAME = "latency"
TITLE = "latency"
def run(opts: Opts) -> Result:
    raise NotImplementedError
