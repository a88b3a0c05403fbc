"""One input never takes a batch down: whatever happens to a file, it gets its own line and the batch goes on;
exit statuses tell "some inputs failed" (1) from a usage or checkpoint error (2) and a failed process (3)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from multimodal_df import predict
from multimodal_df.pipeline.detector import Detector

EXAMPLES = Path(__file__).resolve().parents[2] / "multimodal_df" / "examples"


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = predict.main(["--device", "cpu", *argv], out=out)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def odd_names(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("names")
    from PIL import Image

    src = d / "face.png"
    Image.new("RGB", (48, 48), (150, 110, 90)).save(src)
    names = {
        "newline": "two\nlines.png",
        "escape": "\x1b[2Jclear.png",
        "dash": "-looks-like-an-option.png",
        "tab": "tab\there.png",
    }
    out = {k: Path(shutil.copy(src, d / v)) for k, v in names.items()}
    raw = os.fsencode(d) + b"/not-utf8-\xff\xfe.png"
    shutil.copy(src, raw)
    out["undecodable"] = Path(os.fsdecode(raw))
    return out


def test_odd_file_names_keep_one_line_per_input(detector_dir: Path, odd_names: dict[str, Path]) -> None:
    paths = [str(p) for p in odd_names.values()]
    code, out, err = run(["--checkpoint", str(detector_dir), "--", *paths])
    assert code == 0 and "Traceback" not in err
    verdicts = [line for line in out.splitlines() if not line.startswith("       ")]
    assert len(verdicts) == len(paths)  # notes and reports are indented continuation lines
    assert "two\\nlines.png" in out and "\x1b" not in out and "\\x1b[2Jclear.png" in out
    assert "not-utf8-\\udcff\\udcfe.png" in out and "-looks-like-an-option.png" in out
    code, out, _ = run(["--checkpoint", str(detector_dir), "--json", "--", *paths])
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["path"] for r in records] == paths  # JSON keeps the exact names


def test_a_failing_explanation_is_that_files_error_and_the_batch_goes_on(
    detector_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = EXAMPLES / "fake_face.mp4", EXAMPLES / "real.mp4"
    real_explain = Detector.explain

    def explain(self, target, top_k=4):
        if Path(target.prediction.path) == first:
            raise RuntimeError("the heat map renderer fell over")
        return real_explain(self, target, top_k)

    monkeypatch.setattr(Detector, "explain", explain)
    code, out, err = run(
        ["--checkpoint", str(detector_dir), "--json", "--explain", str(tmp_path), str(first), str(second)]
    )
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and len(records) == 2 and "Traceback" not in err
    assert records[0]["error"].startswith("internal error: RuntimeError: the heat map renderer fell over")
    assert records[1]["error"] is None and Path(records[1]["report"]).is_file()


def test_an_unexpected_exception_in_one_file_is_an_internal_error_line(
    detector_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multimodal_df.pipeline.detector as detector_module

    real_decode = detector_module.decode

    def decode(path, *args, **kwargs):
        if Path(path).name == "fake_voice.mp4":
            raise ZeroDivisionError("a bug that only this file reaches")
        return real_decode(path, *args, **kwargs)

    monkeypatch.setattr(detector_module, "decode", decode)
    files = [str(EXAMPLES / n) for n in ("fake_voice.mp4", "real.mp4")]
    code, out, err = run(["--checkpoint", str(detector_dir), *files])
    lines = [line for line in out.splitlines() if not line.startswith("       ")]
    assert code == 1 and len(lines) == 2 and "Traceback" not in err
    assert "internal error: ZeroDivisionError: a bug that only this file reaches" in lines[0]
    assert "P(fake)=" in lines[1]


def test_exit_statuses(detector_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = str(EXAMPLES / "real.mp4")
    assert run(["--checkpoint", str(detector_dir), good])[0] == 0
    assert run(["--checkpoint", str(detector_dir), good, str(tmp_path / "missing.mp4")])[0] == 1
    code, out, err = run(["--checkpoint", str(tmp_path), good])
    assert code == 2 and out == "" and err.startswith("error: ") and len(err.splitlines()) == 1

    def broken(paths):
        raise MemoryError("the process itself ran out")

    monkeypatch.setattr("multimodal_df.media.sniff.iter_inputs", broken)
    code, out, err = run(["--checkpoint", str(detector_dir), good])
    assert code == 3 and "internal error: MemoryError" in err and "Traceback" not in err
