"""NATS settings for a cluster (DESIGN §7): ``nats_url`` takes a list, ``nats_stream_replicas``
sets the streams' replicas; both from the file, the environment and flags, checked precisely."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from waitroom_proxy.adapters.nats_events import NatsPublisher, servers_of
from waitroom_proxy.adapters.nats_streams import differences, stream_configs
from waitroom_proxy.bootstrap import build_publisher
from waitroom_proxy.cli import main
from waitroom_proxy.config import load_settings
from waitroom_proxy.domain.redact import redact_url
from waitroom_proxy.errors import ConfigError

ONE = {"WAITROOM_CAPACITY": "1"}


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env={**ONE, **env})
    return caught.value.problems


def test_a_comma_separated_list_from_the_environment() -> None:
    settings = load_settings(
        None, env={**ONE, "WAITROOM_NATS_URL": " nats://a:4222, nats://b:4222 ,tls://c:4222"}
    )
    assert settings.nats_url == "nats://a:4222,nats://b:4222,tls://c:4222"
    assert settings.nats_stream_replicas == 1


def test_a_toml_array_or_a_string(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text(
        '[server]\nnats_url = ["nats://a:4222", "nats://b:4222"]\nnats_stream_replicas = 3\n'
        '[[rooms]]\nname = "r"\ncapacity = 1\n'
    )
    settings = load_settings(str(path), env={})
    assert settings.nats_url == "nats://a:4222,nats://b:4222"
    assert settings.nats_stream_replicas == 3


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "nats://a:4222 nats://b:4222",
            'WAITROOM_NATS_URL: separate several NATS URLs with commas, got "nats://a:4222 '
            'nats://b:4222"',
        ),
        (
            "nats://a:4222,http://b:4222",
            'WAITROOM_NATS_URL: must be a nats:// or tls:// URL with a host, got "http://b:4222"',
        ),
        (
            "nats://a:4222,nats://a:4222",
            'WAITROOM_NATS_URL: lists the same URL twice, got "nats://a:4222,nats://a:4222"',
        ),
        (
            "nats://u:pw@a:4222,,nats://b:1",
            "WAITROOM_NATS_URL: must be nats:// or tls:// URLs separated by commas, got "
            '"nats://u:***@a:4222,,nats://b:1"',
        ),
    ],
)
def test_bad_lists_are_refused_precisely(value: str, message: str) -> None:
    assert problems({"WAITROOM_NATS_URL": value}) == [message]


@pytest.mark.parametrize("value", ["0", "6", "three"])
def test_replicas_are_one_to_five(value: str) -> None:
    shown = value if value.isdigit() else f'"{value}"'
    assert problems({"WAITROOM_NATS_STREAM_REPLICAS": value}) == [
        f"WAITROOM_NATS_STREAM_REPLICAS: must be an integer 1-5, got {shown}"
    ]


def test_replicas_flag_outranks_the_environment() -> None:
    settings = load_settings(
        None,
        env={**ONE, "WAITROOM_NATS_STREAM_REPLICAS": "1"},
        flags={"nats_stream_replicas": "3"},
    )
    assert settings.nats_stream_replicas == 3


def test_serve_documents_the_flags() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert "--nats-stream-replicas" in result.output
    assert "WAITROOM_NATS_STREAM_REPLICAS" in result.output
    assert "redis+cluster://" in result.output and "redis+sentinel://" in result.output


def test_the_publisher_gets_every_server_and_the_replicas() -> None:
    settings = load_settings(
        None,
        env={
            **ONE,
            "WAITROOM_NATS_URL": "nats://u:pw@a:4222,nats://b:4222",
            "WAITROOM_NATS_STREAM_REPLICAS": "3",
        },
    )
    pub = build_publisher(settings, "r1")
    assert isinstance(pub, NatsPublisher)
    assert pub.servers == ["nats://u:pw@a:4222", "nats://b:4222"]
    assert pub.stream_replicas == 3
    assert "pw" not in repr(pub) and "nats://u:***@a:4222,nats://b:4222" in repr(pub)
    assert servers_of(" nats://a:1 ,nats://b:2,") == ["nats://a:1", "nats://b:2"]
    assert redact_url("nats://u:p@a:1,tls://b:2") == "nats://u:***@a:1,tls://b:2"
    assert redact_url("nats://token@a:1, tls://b:2") == "nats://***@a:1, tls://b:2"
    with pytest.raises(ValueError):
        NatsPublisher("nats://a:1", source="x", stream_replicas=6)


def test_stream_differences_name_each_setting() -> None:
    wanted, other = stream_configs(3)[0], stream_configs(1)[0]
    assert differences(wanted, wanted) == []
    tuned = other.evolve(max_age=3600.0, subjects=["waitroom.>", "extra.>"])
    assert differences(wanted, tuned) == [
        "subjects waitroom.>,extra.> (wanted waitroom.>)",
        "max_age 3600 s (wanted 604800 s)",
        "num_replicas 1 (wanted 3)",
    ]
