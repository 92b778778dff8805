"""``pinsignal pipelines check`` and ``pinsignal pipelines preview`` through ``pinsignal.cli.main``."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pinsignal.cli import main

DATA = Path(__file__).parent / "data"
ORDER = {
    "type": "track", "event": "Order Completed", "messageId": "order-1001", "userId": "u-42",
    "timestamp": "2025-01-01T12:00:00.000Z", "sentAt": "2025-01-01T12:00:02.000Z",
    "properties": {"revenue": 72.39, "currency": "USD", "products": [{"product_id": "sku-1", "quantity": 3}]},
    "traits": {"email": "jane@example.com"},
    "context": {"ip": "203.0.113.9", "userAgent": "Mozilla/5.0", "page": {"url": "https://shop.example/?epik=abc"}},
}


def event_file(tmp_path: Path, content: Any, name: str = "event.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def test_check_the_shipped_pipelines(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pipelines", "check"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "21 pipeline(s) valid: add_payment_info" in err


def test_check_prints_every_error_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(DATA / "pinterest-checkout.yaml", tmp_path / "good.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntrigger:\n  event: trak\ntransform:\n  statics: []\n", encoding="utf-8")
    (tmp_path / "binary.yml").write_bytes(b"\x00\x01")
    assert main(["pipelines", "check", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{bad}:3: trigger.event 'trak' is not an event type; did you mean 'track'?",
        f"{bad}:5: unknown section 'statics' in transform; did you mean 'static'?",
        f"{tmp_path / 'binary.yml'}:1: this is a binary file (it contains NUL bytes), not a YAML pipeline",
    ]
    assert err == "3 error(s)\n"


def test_check_a_single_file_and_an_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pipelines", "check", str(DATA / "pinterest-checkout.yaml")]) == 0
    assert "1 pipeline(s) valid: pinterest_checkout" in capsys.readouterr().err
    assert main(["pipelines", "check", str(tmp_path)]) == 1
    assert "no pipeline files" in capsys.readouterr().err
    assert main(["pipelines", "check", str(tmp_path / "nope.yaml")]) == 1
    assert capsys.readouterr().out == f"{tmp_path / 'nope.yaml'}:1: no such file or folder\n"


def test_check_reads_pinsignal_pipelines(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PINSIGNAL_PIPELINES", str(DATA / "pinterest-checkout.yaml"))
    assert main(["pipelines", "check"]) == 0
    assert "1 pipeline(s) valid: pinterest_checkout" in capsys.readouterr().err


def test_preview_prints_a_json_array_at_the_events_own_time(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = event_file(tmp_path, ORDER)
    assert main(["pipelines", "preview", str(path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [(entry["pipeline"], entry["valid"], entry["errors"]) for entry in result] == [("checkout", True, [])]
    event = result[0]["event"]
    assert event["event_time"] == 1735732800  # 2025-01-01T12:00:00Z: no skew when replayed at sent_at
    assert event["user_data"]["click_id"] == "abc"
    assert event["custom_data"]["value"] == "72.39"


def test_preview_with_the_real_clock_shows_old_events_invalid(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = event_file(tmp_path, ORDER)
    assert main(["pipelines", "preview", str(path), "--now", "2025-02-01T00:00:00Z"]) == 1
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["valid"] is False
    assert entry["errors"][0].startswith("event_time: ")
    assert "days old" in entry["errors"][0]
    assert main(["pipelines", "preview", str(path), "--now", "clock"]) == 1
    capsys.readouterr()


def test_preview_with_other_pipelines_request_values_and_batches(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    no_epik = dict(ORDER, context={"ip": "203.0.113.9", "userAgent": "UA"})
    path = event_file(tmp_path, {"batch": [no_epik, {"type": "page", "timestamp": "2025-01-01T12:00:00Z"}]})
    code = main(["pipelines", "preview", str(path), "--pipelines", str(DATA / "pinterest-checkout.yaml"),
                 "--cookie", "_epik=from-cookie"])
    assert code == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["pipeline"] == "pinterest_checkout"
    assert entry["event"]["user_data"]["click_id"] == "from-cookie"
    assert main(["pipelines", "preview", str(path), "--pipelines", str(DATA / "pinterest-checkout.yaml"),
                 "--epik", "from-request", "--cookie", "_epik=from-cookie"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["event"]["user_data"]["click_id"] == "from-request"


def test_preview_with_nothing_matching(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = event_file(tmp_path, dict(ORDER, event="care_guide_opened"))
    assert main(["pipelines", "preview", str(path)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == [] and "no pipeline matched" in err


def test_preview_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(json.dumps(ORDER).encode())))
    assert main(["pipelines", "preview", "-"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["pipeline"] == "checkout"


@pytest.mark.parametrize(("content", "reason"), [
    ("{", "not valid JSON: "),
    ("[]", "no events in the file"),
    ('"track"', "not a valid event: the event must be a JSON object, got 'track'"),
    ('{"type": "screen"}', "not a valid event: type: 'screen' is not supported; use 'track', 'page' or 'identify'"),
])
def test_preview_malformed_event_files_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            content: str, reason: str) -> None:
    path = event_file(tmp_path, content)
    assert main(["pipelines", "preview", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{path}: {reason}") and err.count("\n") == 1


def test_preview_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pipelines", "preview", str(tmp_path / "missing.json")]) == 2
    assert "cannot read it" in capsys.readouterr().err
    path = event_file(tmp_path, ORDER)
    assert main(["pipelines", "preview", str(path), "--now", "someday"]) == 2
    assert "--now expects" in capsys.readouterr().err
    assert main(["pipelines", "preview", str(path), "--cookie", "novalue"]) == 2
    assert "--cookie expects NAME=VALUE" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n", encoding="utf-8")
    assert main(["pipelines", "preview", str(path), "--pipelines", str(bad)]) == 2
    assert f"{bad}:1: missing 'trigger'" in capsys.readouterr().err
