"""The control plane: the server behind the control socket and HTTP endpoint, its edits to the
configuration, the event stream, the views it answers with, and the client the CLI and the dashboard use.
It may import `config`, `cache`, `upstream`, the `protocol` package and the root modules (engine, events,
errors, stats).  `control.client` must import nothing but `protocol` (the dashboard loads it alone;
tests/tui/test_wall.py and tests/test_protocol.py check this), so this `__init__` imports nothing.
"""
