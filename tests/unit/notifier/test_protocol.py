"""Parsing client messages: every junk input becomes a ProtocolError with a message to send back."""

from __future__ import annotations

import uuid

import pytest

from services.notifier.protocol import (
    ALL,
    Action,
    ProtocolError,
    Target,
    TargetKind,
    error_reply,
    parse_command,
    reply_to,
    targets_of,
)

JOB = "6F9619FF-8B86-D011-B42D-00C04FC964FF"


def test_subscribe_forms() -> None:
    cmd = parse_command(f'{{"type":"subscribe","jobId":"{JOB}"}}')
    assert cmd.action is Action.SUBSCRIBE
    assert cmd.targets == (Target(TargetKind.JOB, str(uuid.UUID(JOB))),)  # canonical lower case
    assert parse_command('{"type":"unsubscribe","queue":"emails"}').targets == (Target(TargetKind.QUEUE, "emails"),)
    assert parse_command(b'{"type":"subscribe","all":true}').targets == (ALL,)
    assert parse_command('{"type":"ping"}').action is Action.PING


def test_replies_echo_the_targets() -> None:
    assert reply_to(parse_command('{"type":"subscribe","queue":"emails"}')) == {"type": "subscribed", "queue": "emails"}
    assert reply_to(parse_command('{"type":"unsubscribe","all":true}')) == {"type": "unsubscribed", "all": True}
    assert reply_to(parse_command(f'{{"type":"subscribe","jobId":"{JOB}"}}')) == {
        "type": "subscribed", "jobId": JOB.lower()}
    assert reply_to(parse_command('{"type":"ping"}')) == {"type": "pong"}
    assert error_reply("x") == {"type": "error", "message": "x"}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("not json", "not valid JSON"),
        ("", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (None, "empty"),
        ("[1,2]", "JSON object"),
        ('{"jobId":"x"}', "type"),
        ('{"type":7}', "type"),
        ('{"type":"explode"}', "unknown message type"),
        ('{"type":"subscribe"}', "name a target"),
        ('{"type":"subscribe","all":false}', "name a target"),
        ('{"type":"subscribe","all":"yes"}', "all must be true"),
        ('{"type":"subscribe","jobId":"not-a-uuid"}', "UUID"),
        ('{"type":"subscribe","jobId":42}', "UUID"),
        ('{"type":"subscribe","queue":"Bad Queue!"}', "queue name"),
        ('{"type":"subscribe","queue":""}', "queue name"),
    ],
)
def test_junk_is_a_protocol_error(raw: str | bytes | None, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_command(raw)
    assert fragment in str(info.value)


def test_targets_of_dedupes_and_requires_one() -> None:
    assert targets_of([JOB, JOB.lower()], ["q", "q"], True) == (
        Target(TargetKind.JOB, JOB.lower()), Target(TargetKind.QUEUE, "q"), ALL)
    with pytest.raises(ProtocolError):
        targets_of([], [], False)
