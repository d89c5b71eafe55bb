"""Code written for Spleeter 2.4 runs on ``stemsep.compat.spleeter`` with only its imports changed.

Spleeter's own ``tests/test_separator.py`` cases pass through the drop-in:
2stems (official weights, found through ``$MODEL_PATH`` as Spleeter finds
them), 4stems and 5stems (seeded random checkpoints written by the
reference's graph code, as in ``test_parity``), on the example song and on a
mono mp3 of it: ``separate`` (instruments, shapes, dtype), ``separate_to_file``
(file names and lengths), a custom ``filename_format``, and a format without
``{instrument}`` raising ``SpleeterError``. Then the adapter, the background
writes, the error type, and a Spleeter script run with its import lines swapped.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from stemsep.compat.spleeter import AudioAdapter, Codec, Separator, SpleeterError
from stemsep.errors import StemsepError
from tests.helpers import write_audio
from tests.reference import harness

RESOURCES = Path(__file__).parents[1] / "src" / "stemsep" / "resources"
MODEL_TO_INST = {  # as in Spleeter's test_separator.py
    "spleeter:2stems": ("vocals", "accompaniment"),
    "spleeter:4stems": ("vocals", "drums", "bass", "other"),
    "spleeter:5stems": ("vocals", "drums", "bass", "piano", "other"),
}
RANDOM_SEEDS = {"spleeter:4stems": 4, "spleeter:5stems": 5}  # test_parity's checkpoints, shared through the cache
TEST_FILES = ("audio_example.mp3", "audio_example_mono.mp3")


def _random_model_folder(configuration: str) -> Path:
    preset = configuration.split(":")[1]
    return harness.root() / "random-models" / f"{preset}-seed{RANDOM_SEEDS[configuration]}"


def _case(test_file: str, configuration: str):
    """One Spleeter case; slow while its random checkpoint still has to be written by the reference venv."""
    cached = configuration not in RANDOM_SEEDS or (_random_model_folder(configuration) / "model.index").exists()
    return pytest.param(test_file, configuration, marks=() if cached else pytest.mark.slow)


TEST_CONFIGURATIONS = [_case(f, m) for f in TEST_FILES for m in MODEL_TO_INST]


@pytest.fixture(scope="module")
def model_path(official_2stems):
    """``$MODEL_PATH`` holding the official 2stems checkpoint, the way Spleeter users point at models."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODEL_PATH", str(official_2stems.parent))
        yield official_2stems.parent


@pytest.fixture(scope="module")
def separators(model_path):
    """One ``Separator(configuration, multiprocess=False)`` per model, made on first use."""
    made: dict[str, Separator] = {}

    def get(configuration: str) -> Separator:
        if configuration not in made:
            descriptor = configuration
            if configuration in RANDOM_SEEDS:  # a config.json path, which Spleeter takes too
                preset = json.loads((RESOURCES / f"{configuration.split(':')[1]}.json").read_text())
                folder = _random_model_folder(configuration)
                descriptor = str(harness.random_model(preset, folder, RANDOM_SEEDS[configuration]))
            made[configuration] = Separator(descriptor, multiprocess=False)
        return made[configuration]

    return get


@pytest.fixture(scope="module")
def audio_files(example_mp3, tmp_path_factory) -> dict[str, Path]:
    """Spleeter's two test files: the example song and a mono mp3 of it."""
    stereo, _ = AudioAdapter.default().load(example_mp3)
    mono = tmp_path_factory.mktemp("mono") / "audio_example_mono.mp3"
    write_audio(mono, stereo.mean(axis=1, keepdims=True), 44100)
    return {"audio_example.mp3": example_mp3, "audio_example_mono.mp3": mono}


# -- Spleeter's test_separator.py ------------------------------------------------


@pytest.mark.parametrize(("test_file", "configuration"), TEST_CONFIGURATIONS)
def test_separate_gives_each_instrument_its_own_stereo_track_as_long_as_the_input(
    test_file, configuration, audio_files, separators
):
    instruments = MODEL_TO_INST[configuration]
    adapter = AudioAdapter.default()
    waveform, _ = adapter.load(str(audio_files[test_file]))
    assert waveform.shape[1] == (1 if "mono" in test_file else 2)
    prediction = separators(configuration).separate(waveform, test_file)
    assert sorted(prediction) == sorted(instruments)
    for instrument in instruments:
        track = prediction[instrument]
        assert track.shape == (waveform.shape[0], 2) and track.dtype == np.float32
        assert not np.allclose(waveform, track)
        for compared in instruments:
            if instrument != compared:
                assert not np.allclose(track, prediction[compared])


@pytest.mark.parametrize(("test_file", "configuration"), TEST_CONFIGURATIONS)
def test_separate_to_file_writes_a_full_length_stereo_wav_per_instrument(
    test_file, configuration, audio_files, separators, tmp_path
):
    audio = str(audio_files[test_file])
    separators(configuration).separate_to_file(audio, str(tmp_path))
    length = AudioAdapter.default().load(audio, sample_rate=44100)[0].shape[0]
    name = Path(test_file).stem
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == sorted(f"{i}.wav" for i in MODEL_TO_INST[configuration])
    for instrument in MODEL_TO_INST[configuration]:
        info = soundfile.info(tmp_path / name / f"{instrument}.wav")
        assert (info.frames, info.channels, info.samplerate, info.subtype) == (length, 2, 44100, "PCM_16")


@pytest.mark.parametrize(("test_file", "configuration"), TEST_CONFIGURATIONS)
def test_filename_format_places_the_stems_where_it_says(test_file, configuration, audio_files, separators, tmp_path):
    separators(configuration).separate_to_file(
        str(audio_files[test_file]), str(tmp_path), filename_format="export/{filename}/{instrument}.{codec}", duration=3.0
    )
    name = Path(test_file).stem
    for instrument in MODEL_TO_INST[configuration]:
        assert soundfile.info(tmp_path / "export" / name / f"{instrument}.wav").frames == 3 * 44100


@pytest.mark.parametrize(("test_file", "configuration"), TEST_CONFIGURATIONS)
def test_a_format_without_instrument_raises_spleeter_error_before_writing(
    test_file, configuration, audio_files, separators, tmp_path
):
    with pytest.raises(SpleeterError, match="Separated source path conflict"):
        separators(configuration).separate_to_file(
            str(audio_files[test_file]), str(tmp_path), filename_format="I wanna be your lover"
        )
    assert list(tmp_path.iterdir()) == []


# -- beyond Spleeter's tests ----------------------------------------------------------


def test_default_adapter_loads_like_spleeters_ffmpeg_reader(audio_files):
    adapter = AudioAdapter.default()
    assert AudioAdapter.default() is adapter and AudioAdapter.get("") is adapter
    stereo, rate = adapter.load(audio_files["audio_example.mp3"])
    assert rate == 44100 and stereo.dtype == np.float32 and stereo.shape[1] == 2
    mono, _ = adapter.load(str(audio_files["audio_example_mono.mp3"]).encode())  # Spleeter passes bytes from TF
    assert mono.shape[1] == 1
    part, part_rate = adapter.load(
        audio_files["audio_example.mp3"], offset=1.0, duration=2.0, sample_rate=22050, dtype=b"float64"
    )
    assert part.shape == (44100, 2) and part.dtype == np.float64 and part_rate == 22050
    exact, _ = adapter.load(audio_files["audio_example.mp3"], offset=1.0, duration=2.0)
    np.testing.assert_array_equal(exact, stereo[44100:132300])


def test_default_adapter_saves_every_spleeter_codec_and_replaces_files_silently(tmp_path):
    adapter = AudioAdapter.default()
    tone = (0.3 * np.sin(np.arange(44100) / 10.0)).astype(np.float32)[:, None].repeat(2, axis=1)
    for codec in Codec:
        path = tmp_path / f"tone.{codec}"
        adapter.save(path, tone, 44100, codec, "192k")
        adapter.save(path, tone[:22050], 44100, codec, "192k")  # replaced, as FFmpeg -y does
        loaded, _ = adapter.load(path)
        assert abs(loaded.shape[0] - 22050) < 2048, codec  # lossy codecs pad or trim a frame
    adapter.save(tmp_path / "by_extension.flac", tone[:, :1], 44100)
    assert soundfile.info(tmp_path / "by_extension.flac").channels == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    with pytest.raises(SpleeterError, match="does not exist"):
        adapter.save(tmp_path / "missing" / "tone.wav", tone, 44100)


def test_adapter_get_builds_a_named_adapter_class_and_refuses_other_classes():
    assert type(AudioAdapter.get("stemsep.compat.spleeter.StemsepAudioAdapter")).__name__ == "StemsepAudioAdapter"
    with pytest.raises(SpleeterError, match="not a valid AudioAdapter"):
        AudioAdapter.get("pathlib.Path")
    with pytest.raises(SpleeterError, match="Cannot import"):
        AudioAdapter.get("no_such_module.Adapter")


def test_stemsep_errors_surface_as_spleeter_errors_that_are_stemsep_errors(separators, tmp_path):
    with pytest.raises(SpleeterError) as caught:
        Separator("spleeter:3stems")
    assert isinstance(caught.value, StemsepError)
    with pytest.raises(SpleeterError, match="does not exist"):
        AudioAdapter.default().load(tmp_path / "nothing.mp3")
    separator = separators("spleeter:2stems")
    with pytest.raises(SpleeterError, match="Unknown codec"):  # found before the (missing) song is read
        separator.separate_to_file(str(tmp_path / "nothing.mp3"), str(tmp_path), codec="aiff")
    with pytest.raises(SpleeterError, match=r"Unknown placeholder \{song\}"):
        separator.separate_to_file(str(tmp_path / "nothing.mp3"), str(tmp_path), filename_format="{song}/{instrument}.wav")
    with pytest.raises(SpleeterError, match="non-empty"):
        separator.separate(np.zeros((0, 2), np.float32))


class MemoryAdapter(AudioAdapter):
    """A user's own adapter: reads a synthetic song, keeps what it is asked to save."""

    def __init__(self) -> None:
        self.saved: dict[str, np.ndarray] = {}

    def load(self, audio_descriptor, offset=None, duration=None, sample_rate=None, dtype=b"float32"):
        rate = int(sample_rate or 44100)
        t = np.arange(int((duration or 5.0) * rate)) / rate
        return np.stack([np.sin(2 * np.pi * 220 * t), np.sign(np.sin(2 * np.pi * 3 * t))], axis=1).astype(dtype), rate

    def save(self, path, data, sample_rate, codec=None, bitrate=None):
        if "broken" in str(path):
            raise SpleeterError(f"cannot write {path}")
        self.saved[str(path)] = data


def test_background_writes_go_through_a_custom_adapter_and_finish_on_join(model_path, tmp_path):
    separator = Separator("spleeter:2stems")  # multiprocess=True: writes in the background
    adapter = MemoryAdapter()
    separator.separate_to_file("songs/tune.raw", str(tmp_path), adapter, duration=2.0, codec="mp3", synchronous=False)
    separator.join()
    folder = tmp_path / "tune"
    assert sorted(adapter.saved) == [str(folder / "accompaniment.mp3"), str(folder / "vocals.mp3")]
    assert all(data.shape == (88200, 2) for data in adapter.saved.values())
    sources = {"vocals": np.zeros((10, 2), np.float32), "broken": np.zeros((10, 2), np.float32)}
    separator.save_to_file(sources, "x.wav", str(tmp_path), "{instrument}.{codec}", "wav", adapter, synchronous=False)
    with pytest.raises(SpleeterError, match="cannot write"):
        separator.join()
    separator.join()  # the failed write is no longer pending
    assert str(tmp_path / "vocals.wav") in adapter.saved


SPLEETER_SCRIPT = """
import os

from spleeter.separator import Separator
from spleeter.audio.adapter import AudioAdapter
from spleeter.audio import Codec
from spleeter import SpleeterError

separator = Separator("spleeter:2stems")
waveform, rate = AudioAdapter.default().load(AUDIO, sample_rate=44100)
prediction = separator.separate(waveform)
separator.separate_to_file(AUDIO, OUT, codec=Codec.MP3, bitrate="192k", duration=5.0, synchronous=False)
separator.join()
try:
    separator.separate_to_file(AUDIO, OUT, filename_format="{filename}.{codec}")
    conflict = None
except SpleeterError as error:
    conflict = str(error)
result = {
    "rate": int(rate),
    "stems": {name: [list(track.shape), str(track.dtype)] for name, track in prediction.items()},
    "files": sorted(os.path.relpath(os.path.join(d, f), OUT) for d, _, fs in os.walk(OUT) for f in fs),
    "mp3_seconds": [round(AudioAdapter.default().load(os.path.join(OUT, "audio_example", name))[0].shape[0] / 44100, 1)
                    for name in ("vocals.mp3", "accompaniment.mp3")],
    "conflict": conflict,
}
"""
SPLEETER_IMPORTS = [line for line in SPLEETER_SCRIPT.splitlines() if line.startswith("from spleeter")]
COMPAT_IMPORT = "from stemsep.compat.spleeter import AudioAdapter, Codec, Separator, SpleeterError"


def _compat_script() -> str:
    lines = [line for line in SPLEETER_SCRIPT.splitlines() if line not in SPLEETER_IMPORTS]
    return "\n".join([COMPAT_IMPORT, *lines])


def test_a_spleeter_script_runs_with_only_its_imports_changed(model_path, example_mp3, tmp_path):
    namespace = {"AUDIO": str(example_mp3), "OUT": str(tmp_path)}
    exec(compile(_compat_script(), "spleeter_script", "exec"), namespace)
    result = namespace["result"]
    length = AudioAdapter.default().load(example_mp3)[0].shape[0]
    assert result["stems"] == {"vocals": [[length, 2], "float32"], "accompaniment": [[length, 2], "float32"]}
    assert result["files"] == ["audio_example/accompaniment.mp3", "audio_example/vocals.mp3"]
    assert result["mp3_seconds"] == [5.0, 5.0]
    assert result["conflict"].startswith("Separated source path conflict : ")


@pytest.mark.slow
def test_the_same_script_gives_the_same_results_under_spleeter_itself(model_path, example_mp3, tmp_path):
    """The script is Spleeter code: the reference runs it as it is, with the same outcome."""
    script = tmp_path / "script.py"
    out = tmp_path / "reference"
    out.mkdir()
    header = f"import json, os\nAUDIO = {str(example_mp3)!r}\nOUT = {str(out)!r}\n"
    script.write_text(header + SPLEETER_SCRIPT + "\nprint('RESULT ' + json.dumps(result))\n")
    python = harness.reference_venv() / "bin" / "python"
    run = subprocess.run(
        [str(python), str(script)], capture_output=True, text=True, env=harness.reference_env(model_path), timeout=900
    )
    assert run.returncode == 0, run.stderr[-3000:]
    reference = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[7:])
    ours_dir = tmp_path / "ours"
    ours_dir.mkdir()
    namespace = {"AUDIO": str(example_mp3), "OUT": str(ours_dir)}
    exec(compile(_compat_script(), "spleeter_script", "exec"), namespace)
    ours = namespace["result"]
    assert reference["conflict"].startswith("Separated source path conflict : ")
    # Spleeter writes the first stem of the conflicting format before it raises; the drop-in writes nothing.
    assert [f for f in reference["files"] if f.startswith("audio_example/")] == ours["files"]
    assert {k: ours[k] for k in ("rate", "stems", "mp3_seconds")} == {k: reference[k] for k in ("rate", "stems", "mp3_seconds")}
