"""The backup switch's parts (stdlib only, Python 3.11): MPEG-TS in and out (ts), the
splice timeline (splice), the slate (slate), the child processes (children), the
state the operator reads (state), the log lines (logfmt, shared with the confidence
monitor). streamdist_switch.py wires them together."""
