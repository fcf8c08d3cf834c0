from __future__ import annotations

import json
from xml.etree import ElementTree as ET

from rdsbackup.api.render import render


def test_json_list_wrapping() -> None:
    body = {"RequestId": "R", "Items": {"BackupJob": [{"BackupJobId": "1"}, {"BackupJobId": "2"}]}}
    content, ctype = render(body, "JSON", "DescribeBackupTasksResponse")
    assert ctype.startswith("application/json")
    assert json.loads(content) == body


def test_xml_repeats_list_elements_and_keeps_empty_lists_empty() -> None:
    body = {
        "RequestId": "R",
        "Items": {"Backup": [{"BackupId": "7", "IsAvail": 1}, {"BackupId": "8"}]},
        "Empty": {"Backup": []},
    }
    content, ctype = render(body, "XML", "DescribeBackupsResponse")
    assert ctype.startswith("application/xml")
    root = ET.fromstring(content)
    assert root.tag == "DescribeBackupsResponse"
    assert [b.findtext("BackupId") for b in root.iter("Backup")] == ["7", "8"]
    assert root.find("Items/Backup/IsAvail").text == "1"  # type: ignore[union-attr]
    assert root.find("Empty") is not None and list(root.find("Empty")) == []  # type: ignore[arg-type]


def test_xml_error_content_type_is_the_one_tea_parses() -> None:
    content, ctype = render({"Code": "X", "Message": "a <b> & c"}, "XML", "Error", error=True)
    assert ctype == "text/xml;charset=utf-8"
    assert ET.fromstring(content).findtext("Message") == "a <b> & c"


FORBIDDEN = "a\x00b\x01c\x1bd\x0be\x0cf\ufffeg\uffffh\ud800i"


def test_xml_is_well_formed_whatever_a_field_holds() -> None:
    body = {"RequestId": "R", "Items": {"DBInstance": [{"DBInstanceDescription": FORBIDDEN}]}}
    content, _ = render(body, "XML", "DescribeDBInstancesResponse")
    root = ET.fromstring(content)  # a real parser: raises on a forbidden character
    text = root.findtext("Items/DBInstance/DBInstanceDescription")
    assert text == "a\ufffdb\ufffdc\ufffdd\ufffde\ufffdf\ufffdg\ufffdh\ufffdi"
    kept = ET.fromstring(render({"M": "tab\tline\nend é 😀"}, "XML", "Error")[0])
    assert kept.findtext("M") == "tab\tline\nend é 😀"


def test_json_carries_controls_escaped_and_no_lone_surrogate() -> None:
    content, _ = render({"M": FORBIDDEN}, "JSON", "R")
    assert json.loads(content.decode("utf-8"))["M"] == FORBIDDEN.replace("\ud800", "\ufffd")
