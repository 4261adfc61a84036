"""Names and digests are checked whole: a pattern anchored with "$" alone
lets a trailing newline through (``re.match(r"^x$", "x\\n")`` matches), and a
newline in a name can end up in a path, a header or a config file."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from paas.applications.validators import validate_app_name
from runtime_agent.host.errors import InvalidRequest
from runtime_agent.images.refs import DIGEST_RE, ImageRef

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "ref",
    [
        "127.0.0.1:5000/app:v1\n",
        f"127.0.0.1:5000/app@{DIGEST}\n",
        "127.0.0.1:5000/app\n:v1",
        "127.0.0.1:5000/app:v1\n@" + DIGEST,
    ],
)
def test_an_image_reference_with_a_newline_is_refused(ref):
    with pytest.raises(InvalidRequest):
        ImageRef.parse(ref)


def test_well_formed_references_still_parse():
    assert ImageRef.parse(f"127.0.0.1:5000/team/app@{DIGEST}").digest == DIGEST
    assert ImageRef.parse("127.0.0.1:5000/app:v1").tag == "v1"


def test_a_digest_with_a_trailing_newline_is_not_a_digest():
    assert DIGEST_RE.fullmatch(DIGEST)
    assert not DIGEST_RE.fullmatch(DIGEST + "\n")


def test_an_app_name_with_a_trailing_newline_is_refused():
    validate_app_name("my-app")
    with pytest.raises(ValidationError):
        validate_app_name("my-app\n")


def test_a_route_hostname_with_a_trailing_newline_is_refused():
    # It would end up in nginx's configuration.
    from paas.router.routes import hostname_problem, validate_app_label

    assert hostname_problem("www.example.com") is None
    assert hostname_problem("www.example.com\n") is not None
    with pytest.raises(Exception, match="App name refused"):
        validate_app_label("my-app\n")


def test_a_build_secret_name_with_a_trailing_newline_is_refused(tmp_path: Path):
    # It would become a file name under /run/secrets.
    from paas.builds.engine.errors import BuildFailed
    from paas.builds.engine.outbound import write_secrets

    with pytest.raises(BuildFailed, match="not a plain file name"):
        write_secrets({"TOKEN\n": "x"}, tmp_path / "private" / "secrets")
    assert write_secrets({"TOKEN": "x"}, tmp_path / "private2" / "secrets")
