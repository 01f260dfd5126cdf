"""Text an engine chose, shown to people: no terminal escapes in command output, no
formulas in CSV cells."""

from __future__ import annotations

import contextlib
import csv
import io
import json

import pytest
from django.core.management import call_command

from posture.collector.text import printable
from posture.exports import neutralise
from posture.models import DockerHost, Finding

from .fake_engines import EMPTY_ENGINE, answer, raw_engine

HOSTILE = (
    "\x1b]0;owned\x07\x1b[2J\x1b[1;31mred\x1b[0m\x9b31m\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\\x1bPq#0;2\x1b\\ bell\x07 nul\x00 \u202eoverride"
)


def test_printable_removes_escape_sequences_and_shows_other_controls():
    assert printable(HOSTILE) == "redlink bell\\x07 nul\\x00 \\u202eoverride"
    assert printable("line one\nline two\r\n\tindented") == "line one line two  indented"
    assert printable("line one\nline two", keep_newlines=True) == "line one\nline two"
    assert printable("plain Ünïcode ✓ text") == "plain Ünïcode ✓ text"
    assert printable("cut off \x1b[") == "cut off "


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("web/db", "web/db"),
        ("", ""),
        (None, None),
        (True, True),
    ],
)
def test_spreadsheet_cells_never_start_a_formula(cell, safe):
    assert neutralise(cell) == safe


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.suppress(SystemExit):  # poll exits 1 when a host cannot be read
        call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_poll_and_hosts_list_print_engine_text_without_terminal_escapes(db, tmp_path):
    body = json.dumps({"message": HOSTILE}).encode()
    with raw_engine({**EMPTY_ENGINE, "/info": answer(body, "500 Internal Server Error")}, unix=tmp_path / "e.sock") as engine:
        DockerHost.objects.create(name="hostile", url=engine.url)
        _out, err = run("poll", "hostile")
    assert "hostile: unix://" in err and "with 500: " in err and "red" in err
    listed, _ = run("hosts", "list")
    assert "with 500" in listed
    for output in (err, listed):
        assert not any(ch in output for ch in "\x1b\x07\x9b\x00\u202e")


def test_csv_export_neutralises_formulas(db, engine):
    engine.container("edge", network_mode="host")
    DockerHost.objects.create(name="h", url=engine.url)
    call_command("poll", "h", stdout=io.StringIO())
    # Names and labels come from engines and users; any of them can start like a formula.
    Finding.objects.filter(rule_id="host-network").update(subject_name='=HYPERLINK("http://evil.example")', title="@SUM(1)")
    out = io.StringIO()
    call_command("findings", "--format", "csv", stdout=out)
    row = next(r for r in csv.DictReader(io.StringIO(out.getvalue())) if r["rule"] == "host-network")
    assert (row["subject"], row["title"]) == ('\'=HYPERLINK("http://evil.example")', "'@SUM(1)")
