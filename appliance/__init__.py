"""Caching proxy appliance for container registries.

See docs/architecture.md for how the pieces fit together.  The engine (this package) never
imports the dashboard (``tui``); the two meet only at the control-socket protocol.
"""

__version__ = "0.1.0"
