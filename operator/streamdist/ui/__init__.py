"""`streamdist ui`: the control room, a live web page over the two kinds.

The page acts as the person signed in: every Kubernetes call carries the viewer's bearer
token (typed in, or passed by an authenticating proxy), so RBAC decides what they see and
change. Without a token the page reads, if allowed at all, with its own ServiceAccount,
which may only get/list/watch the two kinds and their Events. What reaches the browser
is a whitelisted view of each object (views.py): never spec.url, never a Secret value.
"""
