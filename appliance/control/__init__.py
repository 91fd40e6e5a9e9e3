"""The control plane: the server behind the control socket and HTTP endpoint, its edits to the
configuration, the event stream, the views it answers with, and the client the CLI and the dashboard use.
It may import `engine` (the running engine it acts on), `config`, `cache`, `upstream`, `access`, the
`protocol` package and the root vocabulary (`oci`, `events`, `stats`) and basics (`errors`, `digests`,
`tasks`, `memory`, `logsafe`); never `front`, `registry`, `runner` or `cli` (the proxy never calls the
control plane). `control.client` must import nothing but `protocol` (the dashboard loads it alone;
tests/tui/test_wall.py and tests/test_protocol.py check this), so this `__init__` imports nothing.
"""
