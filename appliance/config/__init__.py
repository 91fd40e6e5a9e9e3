"""The configuration: the immutable model and its value types, the table of config keys (``keys.py``,
where a key is defined), loading and validation, units, upstream credentials, the TOML file (reading,
rendering and in-place edits) and the seed's environment variables (import, auth, export).  It may
import only the root basics (`errors`, `digests`, `tasks`, `memory`, `logsafe`) and the stdlib-only wire
schema `protocol` (for ``protocol.units_text``, the time spelling the dashboard shares): everything else
depends on it, it depends on nothing of the engine.
"""
