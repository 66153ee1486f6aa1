"""The one rule by which gq shows a value that may hold a secret (gq/core/redaction.py)."""

from __future__ import annotations

import logging

import pytest

from gq import config as config_
from gq.core import redaction
from gq.errors import ConfigError
from gq.operate import log

R = redaction.REDACTED


@pytest.mark.parametrize(("url", "shown"), [
    ("http://u:pw@h/p?a=1", f"http://{R}@h/p?a=1"),
    ("http://token@h/", f"http://{R}@h/"),
    ("http://u%40corp:p%2Fw@h:8/x@y", f"http://{R}@h:8/x@y"),   # an @ in the path is not userinfo
    ("https://h/p?page=2&api_key=k1&Password=p2&sig=s#frag", f"https://h/p?page=2&api_key={R}&Password={R}&sig={R}#frag"),
    ("redis://:pw@127.0.0.1:6379/0?password=qp&db=1", f"redis://{R}@127.0.0.1:6379/0?password={R}&db=1"),
    ("redis+sentinel://u:p@h1:1,[::1]:2/svc/2?sentinel_username=su&sentinel_password=sp",
     f"redis+sentinel://{R}@h1:1,[::1]:2/svc/2?sentinel_username=su&sentinel_password={R}"),
    ("redis://h/0?sentinel_pasword=typo", f"redis://h/0?sentinel_pasword={R}"),  # misspelt, still hidden
    ("http://[::1:bad/?token=t", f"http://[::1:bad/?token={R}"),                   # too odd to parse: still hidden
    ("not a url, password=x", "not a url, password=x"),
])
def test_a_url_is_shown_without_its_password_or_credential_query_values(url, shown):
    assert redaction.url(url) == shown
    for secret in redaction.url_secrets(url):
        assert secret not in redaction.scrub(url, redaction.url_secrets(url))


def test_scrub_takes_out_every_spelling_of_a_secret_and_leaves_short_words():
    secrets = redaction.url_secrets("http://u:p%40ss-word@h/")
    text = "connect to http://u:p%40ss-word@h/ as 'p@ss-word' with p%40ss-word, user u"
    assert redaction.scrub(text, secrets) == f"connect to http://{R}@h/ as '{R}' with {R}, user u"


def test_check_config_shows_each_secret_key_through_the_rule():
    config = config_.from_dict({
        "api": {"token": "tok-123456"},
        "target": {"url": "http://svc:urlpw-1@h/x?api_key=urlq-2", "proxy": "http://p:proxypw-3@h:3128",
                   "signing_secrets": {"*.example.com": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
        "broker": {"url": "redis://:brokerpw-4@h:6379/0?password=brokerq-5"}})
    shown = config_.to_toml(config)
    for secret in ("tok-123456", "urlpw-1", "urlq-2", "proxypw-3", "MfKQ9r8", "brokerpw-4", "brokerq-5"):
        assert secret not in shown
    assert f'url = "redis://{R}@h:6379/0?password={R}"' in shown
    assert config_.shown_key(config, "target", "url") == f'"http://{R}@h/x?api_key={R}"'


@pytest.mark.parametrize(("section", "key", "value", "secret"), [
    ("api", "token", 12345678, "12345678"),
    ("api", "token", ["tok-in-a-list"], "tok-in-a-list"),
    ("target", "url", "ftp://u:ftp-pw-1@h/", "ftp-pw-1"),
    ("target", "proxy", "http://p:proxy-pw-2@h:1/path", "proxy-pw-2"),
    ("broker", "url", "mysql://:mysql-pw-3@h/0", "mysql-pw-3"),
    ("broker", "url", "redis+sentinel://:m-pw-4@h:x/svc?sentinel_password=s-pw-5", "s-pw-5"),
    ("target", "signing_secrets", {"h": 123456789}, "123456789"),
])
def test_a_config_error_names_the_key_but_not_its_secret(section, key, value, secret):
    with pytest.raises(ConfigError) as e:
        config_.from_dict({section: {key: value}}, source="gq.toml")
    text = "\n".join(e.value.lines())
    assert f"gq.toml: {section}.{key}: " in text
    assert secret not in text


def test_every_log_line_is_scrubbed_of_the_configured_secrets(capsys):
    config_.from_dict({"api": {"token": "tok-logged-0001"}, "broker": {"url": "redis://:pw-logged-0002@h/0"}})
    log.setup("debug")
    try:
        logging.getLogger("gq.test").debug("redis said: invalid password pw-logged-0002; token=%s", "tok-logged-0001")
        try:
            raise RuntimeError("token tok-logged-0001")
        except RuntimeError:
            logging.getLogger("gq.test").exception("failed")
    finally:
        log.setup("info")
    err = capsys.readouterr().err
    assert "pw-logged-0002" not in err and "tok-logged-0001" not in err
    assert f"invalid password {R}; token={R}" in err and f"RuntimeError: token {R}" in err
