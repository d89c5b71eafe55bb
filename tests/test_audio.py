"""Decoding, offsets and every output codec, through PyAV/soundfile."""

import re

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


@pytest.mark.parametrize(("subtype", "codec"), [("PCM_16", "pcm_s16le"), ("PCM_24", "pcm_s24le"), ("FLOAT", "pcm_f32le")])
def test_pcm_wav_read_through_libsndfile_gives_ffmpegs_samples(tmp_path, monkeypatch, subtype, codec):
    import soundfile

    from stemsep.audio import decode

    path = tmp_path / "a.wav"
    soundfile.write(path, music_like(3.0, 44100, channels=3), 44100, subtype=subtype)  # 3 channels: 2 kept
    assert probe(path).codec == codec
    fast = _read(path, 44100, offset=0.5, duration=2.0)
    monkeypatch.setattr(decode, "_decoded_blocks", None)  # no PyAV: the libsndfile path alone
    np.testing.assert_array_equal(_read(path, 44100, offset=0.5, duration=2.0), fast)
    monkeypatch.undo()
    monkeypatch.setattr(decode, "SNDFILE_CODECS", frozenset())
    np.testing.assert_array_equal(_read(path, 44100, offset=0.5, duration=2.0), fast)  # FFmpeg's conversion
    assert fast.shape == (88200, 2)


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


def _float_wav(path, wave, rate=44100):
    import soundfile

    soundfile.write(path, wave, rate, subtype="FLOAT")
    return path


def test_nan_and_infinite_samples_are_counted_and_located(tmp_path):
    wave = music_like(3.0, 8000)
    wave[4000, 0], wave[4000, 1], wave[20000, 1] = np.nan, np.inf, -np.inf  # 0.5 s and 2.5 s: different blocks
    path = _float_wav(tmp_path / "nan.wav", wave, 8000)
    sentence = (
        f"^{re.escape(str(path))} has 3 samples that are not finite numbers \\(NaN or infinity\\), "
        r"the first at 0\.500 s and the last at 2\.500 s; fix or re-export the file\.$"
    )
    with pytest.raises(StemsepError, match=sentence):
        _read(path, 44100)
    with pytest.raises(StemsepError, match=r"has 1 sample that is not a finite number \(NaN or infinity\), at 2\.500 s;"):
        _read(path, 8000, offset=1.0)  # only the samples read count
    assert _read(path, 8000, duration=0.4).shape[0] == 3200


def test_check_finite_names_the_array_and_its_times():
    from stemsep.audio.decode import check_finite

    wave = np.zeros((44100, 2), np.float32)
    check_finite(wave, "The waveform", 44100)
    wave[22050:22060] = np.nan
    sentence = r"^The waveform has 20 samples .* the first at 1\.500 s and the last at 1\.500 s; x\.$"
    with pytest.raises(StemsepError, match=sentence):
        check_finite(wave, "The waveform", 44100, start_sample=44100, remedy="x")
    with pytest.raises(StemsepError, match=r"at 0\.000 s"):
        check_finite(np.array([np.inf, 0.0], np.float32), "The waveform", 44100)


@pytest.mark.parametrize(
    ("container", "subtype"),
    [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("WAVEX", "PCM_24"), ("RF64", "PCM_16"), ("W64", "PCM_16"), ("AIFF", "PCM_16"),
     ("AIFF", "FLOAT"), ("CAF", "PCM_16"), ("AU", "ULAW")],
)  # fmt: skip
def test_cut_uncompressed_files_are_refused_at_probe(tmp_path, container, subtype):
    import soundfile

    path = tmp_path / "song.audio"
    soundfile.write(path, music_like(10.0, 8000), 8000, format=container, subtype=subtype)
    assert _read(path, 8000).shape[0] == 80000
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.3)])
    sentence = rf"^{re.escape(str(path))} is truncated: its header promises 10\.0 s but the file holds [23]\.\d s\.$"
    with pytest.raises(StemsepError, match=sentence):
        probe(path)


@pytest.mark.parametrize("size", [0xFFFFFFFF, 0])
def test_a_wav_written_to_a_pipe_has_no_length_and_is_read_whole(tmp_path, size):
    path = write_audio(tmp_path / "piped.wav", music_like(2.0, 8000), 8000)
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at : at + 4] = size.to_bytes(4, "little")  # what a writer that cannot seek back leaves
    path.write_bytes(bytes(data))
    assert _read(path, 8000).shape[0] == 16000
