"""Both signature schemes against Alibaba's published test vectors."""

from __future__ import annotations

import pytest

from rdsbackup.api import signature as sig

V1_PARAMS = {
    "AccessKeyId": "testid",
    "Action": "DescribeDedicatedHosts",
    "Format": "JSON",
    "RegionId": "cn-beijing",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "edb2b34af0af9a6d14deaf7c1a5315eb",
    "SignatureVersion": "1.0",
    "Timestamp": "2023-03-13T08:34:30Z",
    "Version": "2014-05-26",
}


def test_v1_official_vector() -> None:
    assert sig.v1_string_to_sign("GET", V1_PARAMS) == (
        "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeDedicatedHosts%26Format%3DJSON"
        "%26RegionId%3Dcn-beijing%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce"
        "%3Dedb2b34af0af9a6d14deaf7c1a5315eb%26SignatureVersion%3D1.0%26Timestamp"
        "%3D2023-03-13T08%253A34%253A30Z%26Version%3D2014-05-26"
    )
    assert sig.v1_signature("GET", V1_PARAMS, "testsecret") == "9NaGiOspFP5UPcwX8Iwt2YJXXuk="


def test_v3_official_vector() -> None:
    headers = {
        "host": "ecs.cn-shanghai.aliyuncs.com",
        "x-acs-action": "RunInstances",
        "x-acs-version": "2014-05-26",
        "x-acs-content-sha256": sig.EMPTY_SHA256,
        "x-acs-date": "2023-10-26T10:22:32Z",
        "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
    }
    query = [
        ("ImageId", "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"),
        ("RegionId", "cn-shanghai"),
    ]
    creq = sig.v3_canonical_request("POST", "/", query, headers, sorted(headers), sig.EMPTY_SHA256)
    sts = sig.v3_string_to_sign(creq)
    assert sts == (
        "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
    )
    assert sig.v3_signature(sts, "YourAccessKeySecret") == (
        "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    )


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (" ", "%20"),
        ("*", "%2A"),
        ("~", "~"),
        ("/", "%2F"),
        ("+", "%2B"),
        ("数", "%E6%95%B0"),
    ],
)
def test_percent_encoding_is_rfc3986(raw: str, encoded: str) -> None:
    assert sig.percent_encode(raw) == encoded


def test_parse_v3_authorization() -> None:
    auth = sig.parse_v3_authorization(
        "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host;x-acs-date,Signature=abc"
    )
    assert auth == sig.V3Authorization("AK", ("host", "x-acs-date"), "abc")
    for bad in (
        "ACS3-HMAC-SHA256 Credential=AK",
        "Basic abc",
        "ACS3-HMAC-SHA256 Credential=,SignedHeaders=host,Signature=x",
    ):
        with pytest.raises(sig.MalformedAuthorization):
            sig.parse_v3_authorization(bad)
