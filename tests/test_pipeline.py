"""Streaming pipeline: chunked equals whole, rates and channels, API shapes."""

import numpy as np
import pytest

from stemsep.errors import StemsepError
from tests.helpers import music_like


def _stream(separator, wave, chunk_segments, block):
    separator.chunk_segments = chunk_segments
    outs = [[] for _ in separator.instruments]
    for pieces in separator.stream(wave[i : i + block] for i in range(0, wave.shape[0], block)):
        for acc, p in zip(outs, pieces):
            acc.append(p)
    return [np.concatenate(a) for a in outs]


def test_chunked_equals_whole_file(separator_2stems, example_wave):
    # ~33 s: three 512-frame segments, so chunks of one segment cross two borders.
    wave = np.concatenate([example_wave, example_wave[::-1], example_wave[:200_000]])
    default = separator_2stems.chunk_segments
    try:
        whole = _stream(separator_2stems, wave, chunk_segments=8, block=wave.shape[0])
        chunked = _stream(separator_2stems, wave, chunk_segments=1, block=12_345)
    finally:
        separator_2stems.chunk_segments = default
    for a, b in zip(whole, chunked):
        assert a.shape == b.shape == wave.shape
        assert np.abs(a - b).max() < 1e-5


def test_stems_add_up_to_the_band_limited_mixture(separator_2stems, example_wave):
    stems = separator_2stems.separate(example_wave, 44100)
    assert set(stems) == {"vocals", "accompaniment"}
    total = stems["vocals"] + stems["accompaniment"]
    # Masks sum to one below F (11025 Hz here) and are zero above: the sum is the low band of the input.
    spectrum_in = np.abs(np.fft.rfft(example_wave[:, 0]))
    spectrum_sum = np.abs(np.fft.rfft(total[:, 0]))
    hz = np.fft.rfftfreq(example_wave.shape[0], 1 / 44100)
    low, high = hz < 10500, hz > 11500
    low_error = np.linalg.norm(spectrum_in[low] - spectrum_sum[low]) / np.linalg.norm(spectrum_in[low])
    assert low_error < 0.02
    assert np.linalg.norm(spectrum_sum[high]) < 0.01 * np.linalg.norm(spectrum_in[high])


@pytest.mark.parametrize(("rate", "channels"), [(8000, 1), (96000, 6)])
def test_any_rate_and_channels_in_stereo_at_input_rate_out(separator_2stems, rate, channels):
    wave = music_like(3.0, rate, channels)
    stems = separator_2stems.separate(wave, rate)
    for stem in stems.values():
        assert stem.shape == (wave.shape[0], 2)
        assert np.isfinite(stem).all()


def test_empty_waveform_is_rejected(separator_2stems):
    with pytest.raises(StemsepError, match="non-empty"):
        separator_2stems.separate(np.zeros((0, 2)), 44100)
