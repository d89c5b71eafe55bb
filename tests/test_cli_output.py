"""What `stemsep separate` writes: chosen stems, folders, bit depth, clipping, channels, stdin, NI stems."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from stemsep.cli import app
from tests.helpers import music_like, snr_db, write_audio

runner = CliRunner()


@pytest.fixture(scope="module")
def model_args(official_2stems):
    return ["-p", "spleeter:2stems", "--model-dir", str(official_2stems.parent)]


@pytest.fixture(scope="module")
def four_stems(tmp_path_factory):
    """A 4stems model folder with seeded random weights (stems need not sound right, only add up)."""
    import keras

    from stemsep.config import load_preset
    from stemsep.model.unet import build_unet_model

    keras.utils.set_random_seed(4)
    folder = tmp_path_factory.mktemp("model") / "model4"
    folder.mkdir()
    config = load_preset("4stems")
    (folder / "config.json").write_text(json.dumps(config.raw))
    build_unet_model(config).save_weights(folder / "model.weights.h5")
    return folder


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    return write_audio(tmp_path_factory.mktemp("in") / "song.wav", music_like(3.0), 44100)


def _separate(*args):
    return runner.invoke(app, ["separate", *map(str, args)])


def _read(path):
    return soundfile.read(path, dtype="float32", always_2d=True)[0]


def test_stems_writes_only_the_chosen_instruments(tmp_path, song, model_args):
    result = _separate(*model_args, "-o", tmp_path, "--stems", "vocals", song)
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "song").iterdir()] == ["vocals.wav"]


def test_two_stems_is_the_instrument_and_the_sum_of_the_others(tmp_path, song, four_stems):
    every = _separate("-p", four_stems, "-o", tmp_path / "all", "--bits", "32f", song)
    two = _separate("-p", four_stems, "-o", tmp_path / "two", "--bits", "32f", "--two-stems", "vocals", song)
    assert every.exit_code == 0 and two.exit_code == 0, every.output + two.output
    assert sorted(p.name for p in (tmp_path / "two" / "song").iterdir()) == ["no_vocals.wav", "vocals.wav"]
    stems = {name: _read(tmp_path / "all" / "song" / f"{name}.wav") for name in ("vocals", "drums", "bass", "other")}
    assert np.array_equal(_read(tmp_path / "two" / "song" / "vocals.wav"), stems["vocals"])
    others = stems["drums"] + stems["bass"] + stems["other"]
    assert snr_db(others, _read(tmp_path / "two" / "song" / "no_vocals.wav")) > 120


def test_an_unknown_stem_name_lists_the_models_instruments(tmp_path, song, model_args):
    result = _separate(*model_args, "-o", tmp_path, "--two-stems", "drums", song)
    assert result.exit_code == 1
    assert result.output == "Error: This model has no 'drums' stem; its instruments are vocals, accompaniment.\n"
    assert not any(tmp_path.iterdir())


def test_a_folder_is_separated_and_its_other_files_counted(tmp_path, model_args):
    album = tmp_path / "album"
    (album / "disc2").mkdir(parents=True)
    write_audio(album / "a.wav", music_like(1.0, seed=1), 44100)
    write_audio(album / "b.flac", music_like(1.0, seed=2), 44100, "flac")
    write_audio(album / "disc2" / "c.wav", music_like(1.0, seed=3), 44100)
    (album / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (album / "notes.txt").write_text("liner notes")
    flat = _separate(*model_args, "-o", tmp_path / "flat", "-f", "{foldername}/{filename}_{instrument}.{codec}", album)
    assert flat.exit_code == 0, flat.output
    assert sorted(p.name for p in (tmp_path / "flat" / "album").iterdir()) == [
        "a_accompaniment.wav",
        "a_vocals.wav",
        "b_accompaniment.wav",
        "b_vocals.wav",
    ]
    assert "2 input(s): 2 separated, 0 failed, 2 non-audio file(s) ignored." in flat.output
    deep = _separate(*model_args, "-o", tmp_path / "deep", "--recursive", album)
    assert deep.exit_code == 0, deep.output
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["a", "b", "c"]


def test_skip_existing_skips_finished_songs_and_does_the_rest(tmp_path, model_args):
    (tmp_path / "in").mkdir()
    first = write_audio(tmp_path / "in" / "first.wav", music_like(1.0, seed=1), 44100)
    second = write_audio(tmp_path / "in" / "second.wav", music_like(1.0, seed=2), 44100)
    assert _separate(*model_args, "-o", tmp_path / "out", first).exit_code == 0
    before = (tmp_path / "out" / "first" / "vocals.wav").stat().st_mtime_ns
    result = _separate(*model_args, "-o", tmp_path / "out", "--skip-existing", first, second)
    assert result.exit_code == 0, result.output
    assert f"{first}: skipped, its stems exist" in result.output
    assert "2 input(s): 1 separated, 1 skipped (stems exist), 0 failed." in result.output
    assert (tmp_path / "out" / "first" / "vocals.wav").stat().st_mtime_ns == before
    assert (tmp_path / "out" / "second" / "vocals.wav").exists()


@pytest.mark.parametrize(
    ("codec", "bits", "subtype"),
    [("wav", "16", "PCM_16"), ("wav", "24", "PCM_24"), ("wav", "32f", "FLOAT"), ("flac", "24", "PCM_24")],
)
def test_bits_set_the_sample_format(tmp_path, song, model_args, codec, bits, subtype):
    result = _separate(*model_args, "-o", tmp_path, "-c", codec, "--bits", bits, "-d", "1", song)
    assert result.exit_code == 0, result.output
    info = soundfile.info(tmp_path / "song" / f"vocals.{codec}")
    assert (info.subtype, info.frames, info.channels) == (subtype, 44100, 2)


def test_clipping_is_clamped_and_counted_rescaled_or_kept(tmp_path, model_args):
    loud = write_audio(tmp_path / "loud.wav", np.clip(music_like(2.0) * 6, -1, 1), 44100)
    clamped = _separate(*model_args, "-o", tmp_path / "clamp", "--bits", "32f", loud)
    kept = _separate(*model_args, "-o", tmp_path / "none", "--bits", "32f", "--clip", "none", loud)
    rescaled = _separate(*model_args, "-o", tmp_path / "rescale", "--bits", "32f", "--clip", "rescale", loud)
    assert clamped.exit_code == kept.exit_code == rescaled.exit_code == 0, clamped.output + kept.output + rescaled.output
    raw = _read(tmp_path / "none" / "loud" / "accompaniment.wav")
    over = int(np.count_nonzero(np.abs(raw) > 1.0))
    assert over > 0, "the test input must make a stem exceed full scale"
    assert f"accompaniment: {over} samples beyond full scale clamped" in clamped.output
    assert np.array_equal(_read(tmp_path / "clamp" / "loud" / "accompaniment.wav"), np.clip(raw, -1, 1))
    peak = float(np.max(np.abs(raw)))
    assert f"accompaniment: peak {peak:.3f}, rescaled by {20 * np.log10(1 / peak):.2f} dB" in rescaled.output
    scaled = _read(tmp_path / "rescale" / "loud" / "accompaniment.wav")
    assert np.max(np.abs(scaled)) <= 1.0 and snr_db(raw / peak, scaled) > 120


def test_mono_input_gives_mono_stems_only_with_keep_channels(tmp_path, model_args):
    mono = write_audio(tmp_path / "mono.wav", music_like(1.0, channels=1), 44100)
    assert _separate(*model_args, "-o", tmp_path / "stereo", "--bits", "32f", mono).exit_code == 0
    assert _separate(*model_args, "-o", tmp_path / "kept", "--bits", "32f", "--keep-channels", mono).exit_code == 0
    assert soundfile.info(tmp_path / "stereo" / "mono" / "vocals.wav").channels == 2
    stereo, kept = _read(tmp_path / "stereo" / "mono" / "vocals.wav"), _read(tmp_path / "kept" / "mono" / "vocals.wav")
    assert kept.shape == (44100, 1)
    assert snr_db(stereo.mean(axis=1, keepdims=True), kept) > 120  # the mean of the two channels


def test_standard_input_is_separated_as_stdin_or_its_name(tmp_path, example_mp3, official_2stems):
    command = [sys.executable, "-m", "stemsep", "separate", "--model-dir", str(official_2stems.parent), "-o", str(tmp_path)]
    for extra, folder in (([], "stdin"), (["--name", "track 1"], "track 1")):
        with open(example_mp3, "rb") as song:
            result = subprocess.run([*command, *extra, "-d", "2", "-"], stdin=song, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        info = soundfile.info(tmp_path / folder / "vocals.wav")
        assert (info.frames, info.samplerate) == (2 * 44100, 44100)


def test_silent_input_writes_silent_stems_with_a_note(tmp_path, model_args):
    silent = write_audio(tmp_path / "silent.wav", np.zeros((44100, 2), np.float32), 44100)
    result = _separate(*model_args, "-o", tmp_path / "out", silent)
    assert result.exit_code == 0, result.output
    assert f"Note: {silent}: {silent} is silent (every sample is zero): its stems are silent too." in result.output
    assert not np.any(_read(tmp_path / "out" / "silent" / "vocals.wav"))


def test_a_few_samples_give_decodable_opus_stems(tmp_path, model_args):
    import av

    for frames in (1, 10):
        tiny = write_audio(tmp_path / f"tiny{frames}.wav", music_like(1.0)[:frames], 44100)
        result = _separate(*model_args, "-o", tmp_path / "out", "-c", "opus", tiny)
        assert result.exit_code == 0, result.output
        with av.open(str(tmp_path / "out" / f"tiny{frames}" / "vocals.opus")) as container:
            decoded = sum(frame.samples for frame in container.decode(audio=0))
        assert decoded == round(frames * 48000 / 44100)
    result = _separate(*model_args, "-o", tmp_path / "out", "-c", "m4a", tmp_path / "tiny10.wav")
    assert result.exit_code == 1
    sentence = (
        "A 10-sample stem is too short for m4a (it needs 1024 samples to decode to anything); write it with -c wav or flac."
    )
    assert result.output == f"Error: {sentence}\n"
    assert not (tmp_path / "out" / "tiny10" / "vocals.m4a").exists()


def test_sigterm_leaves_no_partial_file(tmp_path, official_2stems):
    import signal
    import time

    long_song = write_audio(tmp_path / "long.wav", music_like(120.0), 44100)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "stemsep", "separate", "--model-dir", str(official_2stems.parent), "-o", str(out), long_song],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(out.rglob(".*.partial")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(out.rglob(".*.partial")), "the run never started writing"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143, process.stderr.read()
    assert not [p for p in out.rglob("*") if p.is_file()]


def test_stale_partial_files_of_a_killed_run_are_removed(tmp_path, song, model_args):
    folder = tmp_path / "song"
    folder.mkdir()
    stale, fresh = folder / ".vocals.wav.abc123.partial", folder / ".accompaniment.wav.def456.partial"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    day_ago = os.stat(stale).st_mtime - 25 * 3600
    os.utime(stale, (day_ago, day_ago))
    assert _separate(*model_args, "-o", tmp_path, "-d", "1", song).exit_code == 0
    assert not stale.exists() and fresh.exists()


def _decode_stream(path, index):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[index]
        frames = [frame.to_ndarray() for frame in container.decode(stream)]
    planar = np.concatenate(frames, axis=1)
    if planar.dtype == np.int32:  # ALAC: 24-bit samples in the top bits of s32p
        return (planar.T / 2.0**31).astype(np.float32)
    return planar.T.astype(np.float32)


def test_ni_stems_file_holds_the_mixture_and_four_slots(tmp_path, song, model_args):
    from stemsep.audio.ni_stems import read_ni_stems

    wavs = _separate(*model_args, "-o", tmp_path / "wav", "--bits", "32f", song)
    lossless = _separate(*model_args, "-o", tmp_path / "alac", "-c", "stem.mp4", "--bits", "24", song)
    aac = _separate(*model_args, "-o", tmp_path / "aac", "-c", "stem.mp4", song)
    assert wavs.exit_code == lossless.exit_code == aac.exit_code == 0, wavs.output + lossless.output + aac.output
    for folder, codec in (("alac", "alac"), ("aac", "aac")):
        path = tmp_path / folder / "song.stem.mp4"
        assert [p.name for p in (tmp_path / folder).iterdir()] == ["song.stem.mp4"]
        info = read_ni_stems(path)
        assert [(s.codec, s.channels, s.sample_rate, s.samples) for s in info.streams] == [(codec, 2, 44100, 3 * 44100)] * 5
        assert [s.enabled for s in info.streams] == [True, False, False, False, False]  # players play the mixture
        assert [stem["name"] for stem in info.manifest["stems"]] == ["Accompaniment", "Silent", "Silent", "Vocals"]
    path = tmp_path / "alac" / "song.stem.mp4"
    original = _read(song)
    assert snr_db(np.clip(original, -1, 1), _decode_stream(path, 0)) > 120  # the input itself, 24-bit
    assert snr_db(_read(tmp_path / "wav" / "song" / "accompaniment.wav"), _decode_stream(path, 1)) > 110
    assert not np.any(_decode_stream(path, 2))
    assert snr_db(_read(tmp_path / "wav" / "song" / "vocals.wav"), _decode_stream(path, 4)) > 110
