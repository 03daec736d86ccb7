"""Settings come from the environment, with documented defaults, and bad values are refused clearly."""

from pathlib import Path

import pytest

from common.config import PROJECT_ROOT, ConfigError, Settings, markdown_table


def test_defaults_describe_a_developer_machine():
    settings = Settings.load({})
    assert settings.mail_domain == "ac-montpellier.fr"
    assert settings.smtp_mx_port == 2525
    assert settings.smtp_submission_port == 2587
    assert settings.webmail_port == 8080
    assert settings.directory_address == "127.0.0.1:50051"
    assert settings.amqp_url.endswith("@127.0.0.1:5672//")
    assert settings.state_path == PROJECT_ROOT / "var"


def test_environment_overrides_defaults_with_the_right_types():
    settings = Settings.load({"MAIL_DOMAIN": "ac-exemple.fr", "SMTP_MX_PORT": "25", "CLAMD_TIMEOUT": "2.5"})
    assert settings.mail_domain == "ac-exemple.fr"
    assert settings.smtp_mx_port == 25
    assert settings.clamd_timeout == 2.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SMTP_MX_PORT": "vingt-cinq"}, "SMTP_MX_PORT"),
        ({"CLAMD_TIMEOUT": "soon"}, "CLAMD_TIMEOUT"),
        ({"EVENT_RETRY_DELAYS": "1,x"}, "EVENT_RETRY_DELAYS"),
        ({"EVENT_RETRY_DELAYS": "0"}, "EVENT_RETRY_DELAYS"),
        ({"MX_ADDRESS": "ingest"}, "MX_ADDRESS"),
        ({"MX_ADDRESS": "ingest:smtp"}, "MX_ADDRESS"),
    ],
)
def test_unusable_values_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.load(env)


def test_retry_delays_are_parsed():
    assert Settings.load({"EVENT_RETRY_DELAYS": "2, 10,60"}).retry_delay_seconds() == (2, 10, 60)


@pytest.mark.parametrize(
    ("env", "endpoint"),
    [
        ({}, ("127.0.0.1", 2525)),
        ({"SMTP_HOST": "0.0.0.0", "SMTP_MX_PORT": "25"}, ("127.0.0.1", 25)),
        ({"SMTP_HOST": "10.0.0.5"}, ("10.0.0.5", 2525)),
        ({"MX_ADDRESS": "ingest:2525", "SMTP_HOST": "0.0.0.0"}, ("ingest", 2525)),
        ({"MX_ADDRESS": "[::1]:25"}, ("::1", 25)),
    ],
)
def test_the_mx_notify_sends_to(env, endpoint):
    assert Settings.load(env).mx_endpoint() == endpoint


def test_readme_documents_every_setting():
    readme = (Path(PROJECT_ROOT) / "README.md").read_text()
    missing = [line for line in markdown_table().splitlines()[2:] if line not in readme]
    assert not missing, (
        "README.md's configuration table is out of date; regenerate it with python -m common.config"
    )
