"""Class 4 of issue 15: bad settings. Every numeric option and environment variable is range-checked
(finite, within bounds) by :mod:`edge.settings`, in the library and at the CLI; the CLI prints one
``error:`` line naming the option and the allowed range, exits 3 (a usage error that Click finds: 2),
and writes nothing."""
from __future__ import annotations

import math

import pytest

from corpus import SETTING_CASES
from harness import library_settings_outcomes, run_ffd, settings_outcomes, table
from rel_fixtures import rel_ckpt, rel_corpus, rel_model  # noqa: F401 - fixtures

from edge.errors import ConfigError
from edge.settings import RANGES, check, env_number, option


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf", "1e999", "abc", "", None, True, [3],
                                   0, -1, 17, 2.5, "2.5"])
def test_check_refuses_with_the_name_and_the_range(value):
    with pytest.raises(ConfigError) as e:
        check("--threads", value, 1, 16, True, allow_none=False)
    msg = str(e.value)
    assert msg.startswith("--threads") and "1..16" in msg and "\n" not in msg


@pytest.mark.parametrize("value,want", [(1, 1), (16, 16), ("4", 4), (4.0, 4)])
def test_check_accepts_the_range(value, want):
    got = check("--threads", value, 1, 16, True)
    assert got == want and type(got) is int


def test_float_ranges_and_names_from_the_table():
    assert check("every_s", 0.5) == 0.5 and check("every_s", None) is None
    for bad in (0.0, -1.0, math.nan, math.inf, RANGES["every_s"].hi * 2):
        with pytest.raises(ConfigError, match=r"every_s must be a finite number in \[0.001, 86400\]"):
            check("every_s", bad)
    with pytest.raises(KeyError):
        check("no_such_setting", 1)


def test_threads_are_bounded_by_the_machine_not_only_by_int_range():
    r = RANGES["threads"]
    assert r.lo == 1 and 16 <= r.hi <= 256 and r.integer
    with pytest.raises(ConfigError):
        check("threads", 2000)  # hangs ONNX Runtime's thread pool
    with pytest.raises(ConfigError):
        check("threads", 100000)  # segfaults it


def test_env_number(monkeypatch):
    monkeypatch.delenv("FFD_X", raising=False)
    assert env_number("FFD_X", 300.0, "decode_timeout_s") == 300.0
    monkeypatch.setenv("FFD_X", " ")
    assert env_number("FFD_X", 300.0, "decode_timeout_s") == 300.0
    monkeypatch.setenv("FFD_X", "1e-6")
    assert env_number("FFD_X", 300.0, "decode_timeout_s") == 1e-6
    for bad in ("inf", "nan", "0", "-5", "abc", "1e999", str(30 * 86400)):
        monkeypatch.setenv("FFD_X", bad)
        with pytest.raises(ConfigError, match="FFD_X must be a finite number"):
            env_number("FFD_X", 300.0, "decode_timeout_s")


def test_option_callback_checks_lists_item_by_item():
    cb = option("--threads", "threads")
    assert cb(None) is None and cb([1, 2]) == [1, 2]
    with pytest.raises(ConfigError, match="--threads"):
        cb([1, 2000])


def test_the_decode_timeout_variable(monkeypatch):
    from edge.media import DEFAULT_DECODE_TIMEOUT_S, decode_timeout_s

    monkeypatch.delenv("FFD_DECODE_TIMEOUT_S", raising=False)
    assert decode_timeout_s() == DEFAULT_DECODE_TIMEOUT_S
    for bad in ("inf", "nan", "-1", "0", "forever"):
        monkeypatch.setenv("FFD_DECODE_TIMEOUT_S", bad)
        with pytest.raises(ConfigError, match="FFD_DECODE_TIMEOUT_S"):
            decode_timeout_s()


def test_library_functions_refuse_bad_settings(rel_model, rel_corpus):
    folder, entries = rel_corpus
    video = next(e.path for e in entries if e.name == "face.mp4")
    outcomes = library_settings_outcomes(rel_model, video)
    bad = [o for o in outcomes if not o.ok]
    assert not bad, "\n" + table(bad)
    assert all("ConfigError" in o.detail for o in outcomes)


def test_bad_settings_on_the_command_line(tmp_path, rel_corpus, rel_model, rel_ckpt):
    folder, entries = rel_corpus
    video = next(e.path for e in entries if e.name == "face.mp4")
    import shutil

    classifier = shutil.copy(rel_model, tmp_path / "classifier.onnx")
    outcomes = settings_outcomes(SETTING_CASES, images=folder / "real", video=video, model=rel_model, ckpt=rel_ckpt,
                                 classifier=classifier, work=tmp_path / "runs")
    assert len(outcomes) == len(SETTING_CASES)
    bad = [o for o in outcomes if not o.ok]
    assert not bad, "\n" + table(bad)


def test_a_usage_error_is_one_line(tmp_path):
    """typer's own checks (a missing argument, a non-number) come out as one ``error:`` line too, exit 2."""
    for args in (["detect"], ["detect", tmp_path, "-m", tmp_path / "m.onnx", "--every", "abc"], ["no-such-command"]):
        run = run_ffd(args, timeout=60)
        assert run.rc == 2 and not run.problems(), run.stderr
    run = run_ffd(["--help"], timeout=60)
    assert run.rc == 0 and "Usage" in run.stdout


def test_exit_codes_tell_a_usage_error_from_a_user_error(tmp_path):
    """2 stays Click's (the command line is malformed); 3 is every FfdError (a file, model or value to fix)."""
    import edge.errors as errors

    subclasses = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.FfdError)]
    assert len(subclasses) >= 10 and {c.exit_code for c in subclasses} == {errors.EXIT_USER_ERROR} == {3}
    usage = run_ffd(["detect", tmp_path, "-m", tmp_path / "m.onnx", "--no-such-option"], timeout=60)
    user = run_ffd(["detect", tmp_path, "-m", tmp_path / "m.onnx"], timeout=60)  # the model file is missing
    value = run_ffd(["detect", tmp_path, "-m", tmp_path / "m.onnx", "--threads", "100000"], timeout=60)
    assert usage.rc == 2 and not usage.problems(), usage.stderr
    assert user.rc == 3 and "not found" in user.error_line() and not user.problems(), user.stderr
    assert value.rc == 3 and "--threads" in value.error_line() and not value.problems(), value.stderr
