"""Decoding, offsets and every output codec, through PyAV/soundfile."""

import numpy as np
import pytest

from stemsep.audio.decode import probe, stream_audio
from stemsep.audio.encode import CODECS, StemWriter, available_codecs, parse_bitrate, resolve_codec
from stemsep.errors import StemsepError
from tests.helpers import music_like, snr_db, write_audio


def _read(path, rate, **kwargs):
    return np.concatenate(list(stream_audio(path, rate, **kwargs)))


def test_offset_and_duration_are_sample_exact(tmp_path):
    wave = music_like(4.0, 22050)
    path = write_audio(tmp_path / "a.wav", wave, 22050)
    part = _read(path, 22050, offset=1.5, duration=2.0)
    np.testing.assert_array_equal(part, wave[33075 : 33075 + 44100])
    assert _read(path, 22050, offset=3.0).shape[0] == 22050
    with pytest.raises(StemsepError, match="shorter than the offset"):
        _read(path, 22050, offset=10.0)


def test_mono_is_duplicated_and_extra_channels_dropped(tmp_path):
    mono = music_like(1.0, 8000, 1)
    stereo = _read(write_audio(tmp_path / "m.wav", mono, 8000), 8000)
    np.testing.assert_array_equal(stereo[:, 0], stereo[:, 1])
    six = music_like(1.0, 48000, 6, seed=4)
    first_two = _read(write_audio(tmp_path / "s.wav", six, 48000), 48000)
    np.testing.assert_array_equal(first_two, six[:, :2])


def test_resampling_to_model_rate_keeps_length_and_content(tmp_path):
    t = np.arange(16000) / 16000
    tone = np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1).astype(np.float32) * 0.5
    out = _read(write_audio(tmp_path / "t.wav", tone, 16000), 44100)
    assert abs(out.shape[0] - 44100) <= 1
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(out.shape[0]) / 44100)
    assert snr_db(expected[2000:-2000], out[2000:-2000, 0]) > 60


@pytest.mark.parametrize("codec", [c for c, reason in available_codecs().items() if reason is None])
def test_every_available_codec_round_trips(tmp_path, codec):
    wave = music_like(2.0, 44100) * 0.5
    writer = StemWriter(tmp_path / f"x.{codec}", resolve_codec(codec), 44100, parse_bitrate("192k"))
    for i in range(0, wave.shape[0], 10000):
        writer.write(wave[i : i + 10000])
    writer.commit(overwrite=False)
    assert not list(tmp_path.glob(".*partial"))
    info = probe(tmp_path / f"x.{codec}")
    back = _read(tmp_path / f"x.{codec}", 44100)
    assert info.channels == 2
    # Lossy codecs add encoder delay/padding of a few thousand samples at most.
    assert abs(back.shape[0] - wave.shape[0]) < 4000
    if not CODECS[codec].lossy:
        assert snr_db(wave, back) > 80  # 16-bit quantization only


def test_codec_and_bitrate_errors_are_sentences():
    with pytest.raises(StemsepError, match="Unknown codec 'aiff'"):
        resolve_codec("aiff")
    with pytest.raises(StemsepError, match="not a number"):
        parse_bitrate("fast")
    assert parse_bitrate("128k") == 128_000


def test_aborted_writer_leaves_nothing(tmp_path):
    writer = StemWriter(tmp_path / "x.flac", resolve_codec("flac"), 44100, 128_000)
    writer.write(np.zeros((1000, 2), np.float32))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
