"""JSON and XML bodies in Alibaba's RPC shapes.

Lists are wrapped the RPC way: ``{"Items": {"Backup": [...]}}`` in JSON, and in XML the
list's key repeats as one element per item (``<Items><Backup>..</Backup><Backup>..``).

Every body is well-formed whatever a stored field or an echoed value holds: a character
XML 1.0 forbids (which no escape can carry) is sent as U+FFFD in XML, and a lone
surrogate (which UTF-8 cannot carry) as U+FFFD in both formats. Input refuses such
characters (``Params``), so this only guards what arrived by other ways.
"""

from __future__ import annotations

import json
import re
from typing import Any
from xml.etree import ElementTree as ET

from rdsbackup.api.text import REPLACEMENT, xml_safe

JSON_TYPE = "application/json;charset=utf-8"
XML_SUCCESS_TYPE = "application/xml;charset=utf-8"
XML_ERROR_TYPE = "text/xml;charset=utf-8"
"""The Tea SDKs parse an XML error only with exactly this Content-Type."""

_XML_DECL = b'<?xml version="1.0" encoding="UTF-8"?>'
_SURROGATE = re.compile("[\ud800-\udfff]")


def render(body: dict[str, Any], fmt: str, root: str, *, error: bool = False) -> tuple[bytes, str]:
    if fmt == "XML":
        return _xml(body, root), XML_ERROR_TYPE if error else XML_SUCCESS_TYPE
    text = json.dumps(body, ensure_ascii=False)
    return _SURROGATE.sub(REPLACEMENT, text).encode(), JSON_TYPE


def _xml(body: dict[str, Any], root: str) -> bytes:
    element = ET.Element(root)
    _fill(element, body)
    return _XML_DECL + ET.tostring(element, encoding="unicode").encode()


def _fill(parent: ET.Element, value: dict[str, Any]) -> None:
    for key, item in value.items():
        if isinstance(item, list):
            for entry in item:
                _append(parent, key, entry)
        else:
            _append(parent, key, item)


def _append(parent: ET.Element, key: str, value: Any) -> None:
    child = ET.SubElement(parent, key)
    if isinstance(value, dict):
        _fill(child, value)
    elif isinstance(value, bool):
        child.text = "true" if value else "false"
    elif value is not None:
        child.text = xml_safe(str(value))
