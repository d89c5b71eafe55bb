"""The CLI: fast help, Spleeter's options, and one clear sentence for every bad input."""

import shutil
import subprocess
import sys
import wave

import pytest
from typer.testing import CliRunner

from stemsep.cli import app
from tests.helpers import music_like, write_audio

runner = CliRunner()


@pytest.fixture(scope="module")
def model_args(official_2stems):
    return ["-p", "spleeter:2stems", "--model-dir", str(official_2stems.parent)]


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from stemsep.cli import app; from typer.testing import CliRunner; "
        "r = CliRunner().invoke(app, ['separate', '--help']); assert r.exit_code == 0, r.output; "
        "assert '--filename_format' in r.output; assert 'tensorflow' not in sys.modules; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


def test_spleeter_options_write_the_named_stems(tmp_path, example_mp3, model_args):
    out = tmp_path / "out"
    args = [
        "separate",
        *model_args,
        "-o",
        str(out),
        "-c",
        "flac",
        "-b",
        "192k",
        "-s",
        "1.5",
        "-d",
        "4",
        "-f",
        "{foldername}-{filename}_{instrument}.{codec}",
        str(example_mp3),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["example-audio_example_accompaniment.flac", "example-audio_example_vocals.flac"]
    import soundfile

    info = soundfile.info(out / names[0])
    assert info.samplerate == 44100 and info.channels == 2 and info.frames == 4 * 44100


def _bad_files(tmp_path, example_mp3):
    files = {}
    files["missing"] = (tmp_path / "nope.mp3", "does not exist")
    folder = tmp_path / "folder.wav"
    (folder / "sub").mkdir(parents=True)
    (folder / "cover.jpg").write_bytes(b"\xff\xd8")
    files["folder"] = (folder, "holds no audio files (--recursive also searches its subfolders).")
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio\n" * 50)
    files["not audio"] = (text, "not an audio file")
    truncated = tmp_path / "truncated.mp3"
    truncated.write_bytes(example_mp3.read_bytes()[:120_000])
    files["truncated"] = (truncated, "is truncated")
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
    files["zero-length"] = (empty, "no audio samples")
    return files


def test_batch_goes_on_past_bad_files_and_reports_them(tmp_path, example_mp3, model_args):
    bad = _bad_files(tmp_path, example_mp3)
    good = write_audio(tmp_path / "good8k.wav", music_like(3.0, 8000, 1), 8000)
    odd = write_audio(tmp_path / "odd96k.wav", music_like(2.0, 96000, 6), 96000)
    out = tmp_path / "out"
    inputs = [str(p) for p, _ in bad.values()]
    result = runner.invoke(app, ["separate", *model_args, "-o", str(out), inputs[0], str(good), *inputs[1:], str(odd)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"{len(bad)} of {len(bad) + 2} file(s) failed" in result.output
    for path, message in bad.values():
        assert message in result.output, (path, result.output)
    # The good files were separated (at their own rates, in stereo) and nothing was left for the bad ones.
    import soundfile

    assert soundfile.info(out / "good8k" / "vocals.wav").samplerate == 8000
    assert soundfile.info(out / "odd96k" / "accompaniment.wav").samplerate == 96000
    assert sorted(p.name for p in out.iterdir()) == ["good8k", "odd96k"]


def test_existing_stems_are_never_overwritten_without_consent(tmp_path, model_args):
    song = write_audio(tmp_path / "song.wav", music_like(2.0), 44100)
    out = tmp_path / "out"
    (out / "song").mkdir(parents=True)
    (out / "song" / "vocals.wav").write_text("precious")
    result = runner.invoke(app, ["separate", *model_args, "-o", str(out), str(song)])
    assert result.exit_code == 1 and "already exists (use --overwrite" in result.output
    assert (out / "song" / "vocals.wav").read_text() == "precious"
    assert not (out / "song" / "accompaniment.wav").exists()
    assert runner.invoke(app, ["separate", *model_args, "-o", str(out), "--overwrite", str(song)]).exit_code == 0
    assert (out / "song" / "vocals.wav").stat().st_size > 100_000


def test_unwritable_output_folder(tmp_path, model_args):
    song = write_audio(tmp_path / "song.wav", music_like(1.0), 44100)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(app, ["separate", *model_args, "-o", str(blocker / "out"), str(song)])
    assert result.exit_code == 1 and "Cannot create the output folder" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "spleeter:3stems"], "Unknown model 'spleeter:3stems'"),
        (["-p", "no/such/config.json"], "does not exist"),
        (["-c", "aiff"], "Unknown codec 'aiff'"),
    ],
)
def test_bad_options_are_one_sentence(tmp_path, args, message):
    result = runner.invoke(app, ["separate", *args, "-o", str(tmp_path), "x.wav"])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_corrupt_checkpoint_in_a_real_process(tmp_path, official_2stems):
    broken = tmp_path / "models" / "2stems"
    shutil.copytree(official_2stems, broken)
    (broken / "model.index").write_bytes(b"garbage")
    env_cache = tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, "-m", "stemsep", "separate", "--model-dir", str(broken.parent), "-o", str(tmp_path / "o"), "song.wav"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "STEMSEP_CACHE": str(env_cache)},
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("Error: Checkpoint") and "corrupt or unreadable" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "onnx", "--quantize", "int8-dynamic"], "ONNX exports are fp32"),
        (["--format", "savedmodel", "--quantize", "fp16"], "A SavedModel is not quantized"),
        (["--format", "coreml"], "Unknown export format 'coreml'"),
    ],
)
def test_bad_export_requests_are_one_sentence(tmp_path, args, message):
    result = runner.invoke(app, ["export", "-p", "spleeter:2stems", *args, "-o", str(tmp_path)])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["-s", "nan"], "The offset must be a number of seconds >= 0 (got nan)."),
        (["-d", "inf"], "The duration must be a number of seconds > 0 (got inf)."),
        (["-d", "0"], "The duration must be a number of seconds > 0 (got 0.0)."),
        (
            ["-f", "{filename/{instrument}.{codec}"],
            "The filename format '{filename/{instrument}.{codec}' has an unmatched { or }; placeholders look like {instrument}.",
        ),
        (
            ["-f", "{filename}/{stem}.{codec}"],
            "Unknown placeholder {stem} in the filename format; use filename, foldername, instrument, codec.",
        ),
        (
            ["-f", "/tmp/{filename}_{instrument}.{codec}"],
            "The filename format '/tmp/{filename}_{instrument}.{codec}' is absolute; it must stay inside the output folder.",
        ),
        (["--bits", "32f", "-c", "flac"], "FLAC stores integers only: use --bits 16 or 24, or -c wav --bits 32f."),
        (["--bits", "24", "-c", "mp3"], "--bits applies to wav, flac and stem.mp4; mp3 sets its quality with --bitrate."),
        (
            ["--clip", "none"],
            "--clip none keeps samples beyond full scale, which 16-bit wav cannot hold: "
            "use --bits 32f, a lossy codec, or --clip clamp|rescale.",
        ),
        (["--stems", "vocals", "--two-stems", "vocals"], "Give either --stems or --two-stems, not both."),
        (["--name", "x"], "--name names standard input (-); other files keep their own names."),
    ],
)
def test_arguments_are_checked_before_any_model_loads(tmp_path, args, sentence):
    # The model does not exist: each argument's sentence must come first, before any model is looked for.
    result = runner.invoke(app, ["separate", "-p", "spleeter:3stems", *args, "-o", str(tmp_path / "out"), "x.wav"])
    assert result.exit_code == 1
    assert result.output == f"Error: {sentence}\n"
    assert not (tmp_path / "out").exists()


def test_a_format_that_leaves_the_output_folder_is_refused(tmp_path, model_args):
    song = write_audio(tmp_path / "song.wav", music_like(1.0), 44100)
    out = tmp_path / "a" / "out"
    result = runner.invoke(
        app, ["separate", *model_args, "-o", str(out), "-f", "../../{filename}_{instrument}.{codec}", str(song)]
    )
    assert result.exit_code == 1
    escaped = out / "../../song_vocals.wav"
    assert result.output == (
        f"Error: The filename format '../../{{filename}}_{{instrument}}.{{codec}}' writes {escaped}, "
        f"outside the output folder {out}; keep it relative and without '..'.\n"
    )
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["song.wav"]


def test_colliding_outputs_in_one_batch_are_refused_before_any_work(tmp_path, model_args):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_audio(tmp_path / "a" / "song.wav", music_like(1.0, seed=1), 44100)
    second = write_audio(tmp_path / "b" / "song.wav", music_like(1.0, seed=2), 44100)
    out = tmp_path / "out"
    result = runner.invoke(app, ["separate", *model_args, "-o", str(out), "--overwrite", str(first), str(second)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {first} and {second} would both write {out / 'song' / 'vocals.wav'}; add {{foldername}} to the filename "
        "format or separate them into different folders.\n"
    )
    assert not out.exists()
    fixed = runner.invoke(
        app,
        ["separate", *model_args, "-o", str(out), "-f", "{foldername}/{filename}/{instrument}.{codec}", str(first), str(second)],
    )
    assert fixed.exit_code == 0, fixed.output
    assert (out / "a" / "song" / "vocals.wav").exists() and (out / "b" / "song" / "vocals.wav").exists()


def test_a_single_inputs_error_is_printed_once(tmp_path, model_args):
    result = runner.invoke(app, ["separate", *model_args, "-o", str(tmp_path), str(tmp_path / "nope.wav")])
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path / 'nope.wav'} does not exist.\n"
