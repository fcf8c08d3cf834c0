"""Characters XML 1.0 cannot carry, even as character references: C0 controls other
than TAB, LF and CR, lone surrogates, U+FFFE and U+FFFF."""

from __future__ import annotations

import re

_XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
REPLACEMENT = "\ufffd"


def has_xml_forbidden(text: str) -> bool:
    return _XML_FORBIDDEN.search(text) is not None


def xml_safe(text: str) -> str:
    """``text`` with each character XML 1.0 forbids replaced by U+FFFD."""
    return _XML_FORBIDDEN.sub(REPLACEMENT, text)
