"""``sluice parse``: the TagoIO-style decoders give Node's output; errors exit 1."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sluice.cli import main as sluice_main
from sluice_parser.realm import loads

DECODERS_FILE = Path(__file__).with_name("test_sandbox_decoders.py")


def _decoder_cases() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sluice_decoder_cases_cli", DECODERS_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DECODERS = _decoder_cases()
CASES: dict[str, tuple[str, list[Any], dict[str, Any], str | None]] = DECODERS.CASES

pytestmark = pytest.mark.skipif(shutil.which(DECODERS.NODE) is None, reason="Node.js is missing")


@pytest.fixture(scope="module")
def node() -> dict[str, Any]:
    return DECODERS.run_in_node(CASES)


def parse(tmp_path: Path, code: str, *args: str) -> list[str]:
    file = tmp_path / "decoder.js"
    file.write_text(code, encoding="utf-8")
    return ["parse", "--code", str(file), *args]


@pytest.mark.parametrize("name", list(CASES), ids=str)
def test_decoder_output_matches_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], node: dict[str, Any], name: str
) -> None:
    code, payload, device, raw = CASES[name]
    given = ["--hex", raw] if raw is not None else ["--payload", json.dumps(payload)]
    status = sluice_main(parse(tmp_path, code, *given, "--device", json.dumps(device)))
    out, err = capsys.readouterr()
    expected = node[name]
    console = [
        line.removeprefix("console ") for line in err.splitlines() if line.startswith("console ")
    ]
    if expected["error"] is None:
        assert status == 0, err
        assert loads(out) == expected["payload"]
    else:
        assert status == 1
        assert out == ""
        [error] = [line for line in err.splitlines() if line.startswith("error: ")]
        assert error.removeprefix("error: ").split(":")[0] == expected["error"].split(":")[0]
    if name != "lorawan environment, short frame":  # console.error(e) prints the stack in Node
        assert console == expected["console"]


def test_invalid_output_fails_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = "payload = [{ variable: 'two words', value: 1 }];"
    assert sluice_main(parse(tmp_path, code)) == 1
    out, err = capsys.readouterr()
    assert json.loads(out) == [{"variable": "two words", "value": 1}]
    assert "not storable: item 0: " in err


def test_hex_is_normalised_as_an_mqtt_payload_on_the_topic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = (
        "payload = [{ variable: 'seen', value: payload[0].value, metadata: payload[0].metadata }];"
    )
    assert sluice_main(parse(tmp_path, code, "--hex", "c0ffee", "--topic", "farm/1")) == 0
    assert json.loads(capsys.readouterr().out) == [
        {
            "variable": "seen",
            "value": "C0FFEE",
            "metadata": {"mqtt_topic": "farm/1", "topic": "farm/1"},
        }
    ]


def test_built_in_parser_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    status = sluice_main(["parse", "--code", "@sluice/cayenne-lpp", "--hex", "036701108a"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert json.loads(out)[0] == {"variable": "temperature_3", "value": 27.2, "unit": "°C"}


def test_unusable_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sluice_main(["parse", "--code", str(tmp_path / "missing.js")]) == 2
    assert sluice_main(parse(tmp_path, "1;", "--payload", "{not json")) == 2
    assert sluice_main(parse(tmp_path, "1;", "--hex", "xyz")) == 2
    assert sluice_main(parse(tmp_path, "1;", "--device", '{"tags": [1]}')) == 2
    err = capsys.readouterr().err
    assert "cannot read the parser code" in err
    assert "--payload is not valid JSON" in err


def test_the_installed_command_exits_1_on_a_timeout(tmp_path: Path) -> None:
    file = tmp_path / "spin.js"
    file.write_text("console.log('spinning');\nwhile (true) {}\n")
    sluice = Path(sys.executable).with_name("sluice")
    done = subprocess.run(
        [str(sluice), "parse", "--code", str(file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"SLUICE_PARSER_TIME_LIMIT": "0.2", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,  # no .env of the checkout
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "console log: spinning",
        "error: timeout: parser exceeded 0.2 s CPU time",
    ]
