"""Text from clients and upstreams made safe to show on one line: in a log line, an event or an error
message, where a control character could forge a line or hide what follows."""

from __future__ import annotations


def shown(text: str, limit: int = 200) -> str:
    """``text`` as one log-safe line: control and other non-printable characters escaped."""
    cut = text if len(text) <= limit else text[:limit] + "..."
    if cut.isprintable() and "\\" not in cut:
        return cut
    out = []
    for char in cut:
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)
