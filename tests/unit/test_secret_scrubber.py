import base64

from rdev.domain.secrets import SecretScrubber


def test_scrubs_plain_urlencoded_and_basic_auth_forms():
    s = SecretScrubber(["s3cr3t/tok+en"])
    basic = base64.b64encode(b"x-access-token:s3cr3t/tok+en").decode()
    text = f"a s3cr3t/tok+en b s3cr3t%2Ftok%2Ben c Authorization: Basic {basic}"
    out = s.scrub(text)
    assert "s3cr3t" not in out
    assert basic.rstrip("=") not in out


def test_url_userinfo_always_removed():
    assert SecretScrubber().scrub("fatal: https://bob:pw@host/x.git") == (
        "fatal: https://***@host/x.git"
    )


def test_short_values_are_not_scrubbed_to_avoid_mangling_text():
    assert SecretScrubber(["ab"]).scrub("abc") == "abc"
