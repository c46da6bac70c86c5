"""stub"""
from .common import Opts, Result
NAME = "mediacost"
TITLE = "mediacost"
def run(opts: Opts) -> Result:
    raise NotImplementedError
