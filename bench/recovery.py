"""stub"""
from .common import Opts, Result
NAME = "recovery"
TITLE = "recovery"
def run(opts: Opts) -> Result:
    raise NotImplementedError
