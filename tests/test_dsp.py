"""STFT, iSTFT and masks against tf.signal and Spleeter's formulas."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

from stemsep.dsp import fft
from stemsep.dsp.masks import extend_band, ratio_masks
from stemsep.dsp.stft import OverlapAdd, periodic_hann, stft_frames

FRAME, HOP = 4096, 1024


def test_stft_matches_tf_signal_with_pad_end():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20000, 2)).astype(np.float32)
    expected = tf.signal.stft(x.T, FRAME, HOP, window_fn=tf.signal.hann_window, pad_end=True).numpy().transpose(1, 2, 0)
    n_frames = -(-x.shape[0] // HOP)
    assert expected.shape[0] == n_frames
    padded = np.concatenate([x, np.zeros(((n_frames - 1) * HOP + FRAME - x.shape[0], 2), np.float32)])
    ours = stft_frames(padded, FRAME, HOP, n_frames, periodic_hann(FRAME)).transpose(1, 2, 0)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=2e-3 * np.abs(expected).max() / 100)


def test_the_stfts_use_scipys_pocketfft_without_importing_scipy(monkeypatch):
    """The fast FFTs are found in this installation (scipy is a dependency) and give numpy's numbers
    (the numpy fallback computes the same STFT and inverse); the inverse gives the signal back."""
    import subprocess
    import sys

    probe = "import sys; from stemsep.dsp import fft; print(fft.pocketfft() is not None, 'scipy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split() == [
        "True",
        "False",
    ]
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9 * HOP + FRAME, 2)).astype(np.float32)
    fast = stft_frames(x, FRAME, HOP, 10, periodic_hann(FRAME))
    fast_inverse = OverlapAdd(FRAME, HOP, 2, periodic_hann(FRAME)).push(fast)
    monkeypatch.setattr(fft, "pocketfft", lambda: None)
    slow = stft_frames(x, FRAME, HOP, 10, periodic_hann(FRAME))
    assert fast.dtype == slow.dtype == np.complex64
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-5 * np.abs(slow).max())
    slow_inverse = OverlapAdd(FRAME, HOP, 2, periodic_hann(FRAME)).push(fast)
    assert fast_inverse.dtype == slow_inverse.dtype == np.float32
    np.testing.assert_allclose(fast_inverse, slow_inverse, rtol=0, atol=1e-5 * np.abs(slow_inverse).max())
    np.testing.assert_allclose(fast_inverse[3 * HOP :], x[3 * HOP : 10 * HOP], rtol=0, atol=1e-4)  # fully overlapped


def test_overlap_add_matches_tf_inverse_stft_in_pieces():
    rng = np.random.default_rng(2)
    spec = (rng.normal(size=(37, FRAME // 2 + 1, 2)) + 1j * rng.normal(size=(37, FRAME // 2 + 1, 2))).astype(np.complex64)
    expected = tf.signal.inverse_stft(spec.transpose(2, 0, 1), FRAME, HOP, window_fn=tf.signal.hann_window).numpy().T * (2 / 3)
    ola = OverlapAdd(FRAME, HOP, 2, periodic_hann(FRAME))
    channels_first = spec.transpose(2, 0, 1)
    pieces = [ola.push(channels_first[:, a:b]) for a, b in ((0, 5), (5, 6), (6, 30), (30, 37))] + [ola.flush()]
    ours = np.concatenate(pieces)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_overlap_add_of_a_band_times_a_gain_equals_the_zero_padded_product():
    # The pipeline pushes the band below F times the mask (a mono mixture's one channel by both
    # channels' masks); the bins above are zero. Widths change between pushes (F, every bin, F).
    rng = np.random.default_rng(3)
    bins, band, n = FRAME // 2 + 1, 1024, 150  # 150 frames: more than one block of frames
    spec = (rng.normal(size=(1, n, bins)) + 1j * rng.normal(size=(1, n, bins))).astype(np.complex64)
    gain = rng.uniform(0, 1, size=(2, n, bins)).astype(np.float32)
    full = np.zeros((2, n, bins), np.complex64)
    full[:, :100, :band] = spec[:, :100, :band] * gain[:, :100, :band]
    full[:, 100:120] = spec[:, 100:120] * gain[:, 100:120]
    full[:, 120:, :band] = spec[:, 120:, :band] * gain[:, 120:, :band]
    reference = OverlapAdd(FRAME, HOP, 2, periodic_hann(FRAME))
    expected = np.concatenate([reference.push(full), reference.flush()])
    ola = OverlapAdd(FRAME, HOP, 2, periodic_hann(FRAME))
    pieces = [
        ola.push(spec[:, :100, :band], gain=gain[:, :100, :band]),
        ola.push(spec[:, 100:120], gain=gain[:, 100:120]),
        ola.push(spec[:, 120:, :band], gain=gain[:, 120:, :band]),
        ola.flush(),
    ]
    np.testing.assert_allclose(np.concatenate(pieces), expected, atol=1e-7)  # the sums' order differs


def test_stft_keeps_the_band_asked_for_and_the_peak_over_every_bin():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200 * HOP + FRAME, 2)).astype(np.float32)
    whole = stft_frames(x, FRAME, HOP, 200, periodic_hann(FRAME))
    band = np.empty((2, 256, 1024), np.complex64)
    peak = np.zeros(1, np.float32)
    kept = stft_frames(x, FRAME, HOP, 200, periodic_hann(FRAME), out=band, peak=peak)
    np.testing.assert_array_equal(kept, whole[:, :, :1024])
    assert peak[0] == np.abs(whole).max()
    assert np.abs(whole[:, :, 1024:]).max() > 0


def test_ratio_masks_follow_spleeter_formula_and_sum_to_one():
    rng = np.random.default_rng(3)
    estimates = [rng.uniform(0, 2, size=(4, 8, 2)).astype(np.float32) for _ in range(3)]
    masks = ratio_masks(estimates, 2.0)
    total = sum(e.astype(np.float64) ** 2 for e in estimates) + 1e-10
    np.testing.assert_allclose(masks[1], (estimates[1].astype(np.float64) ** 2 + 1e-10 / 3) / total, rtol=1e-5)
    np.testing.assert_allclose(sum(masks), 1.0, rtol=1e-5)
    silent = ratio_masks([np.zeros((1, 1, 2), np.float32)] * 4, 2.0)
    np.testing.assert_allclose(silent[0], 0.25)


def test_mask_extension_zeros_and_average():
    mask = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    zeros = extend_band(mask, 5, "zeros", axis=1)
    assert zeros.shape == (2, 5, 2) and np.all(zeros[:, 3:] == 0) and np.array_equal(zeros[:, :3], mask)
    average = extend_band(mask, 5, "average", axis=1)
    np.testing.assert_allclose(average[:, 4], mask.mean(axis=1))
    assert extend_band(mask, 4, "average").shape == (2, 3, 4)  # default: the last axis


def test_stereo_wiener_filter_equals_norbert():
    import norbert

    from stemsep.dsp.wiener import wiener_stfts

    rng = np.random.default_rng(4)
    frames, bins, band = 300, 257, 128
    x = ((rng.normal(size=(frames, bins, 2)) + 1j * rng.normal(size=(frames, bins, 2))) * 30).astype(np.complex64)
    estimates = [np.abs(rng.normal(size=(frames, band, 2)) * k).astype(np.float32) for k in (1, 3, 0.1)]
    expected = norbert.wiener(np.stack([extend_band(e, bins, "zeros", axis=1) for e in estimates], axis=-1), x.copy())
    mixture = np.ascontiguousarray(x.transpose(2, 0, 1))  # the pipeline's layout: [channels, frames, bins]
    buffers = [np.zeros_like(mixture) for _ in estimates]
    for buffer in buffers:
        buffer[:, :, :band] = 7  # what a previous chunk left below F is overwritten
    with ThreadPoolExecutor(2) as pool:
        ours = wiener_stfts(estimates, mixture, pool, buffers)
    assert all(stem is buffer for stem, buffer in zip(ours, buffers))
    for i, stem in enumerate(ours):
        stem = stem.transpose(1, 2, 0)
        error = np.sum(np.abs(expected[..., i] - stem) ** 2) / np.sum(np.abs(expected[..., i]) ** 2)
        assert 10 * np.log10(1 / error) > 100
        assert np.all(stem[:, band:] == 0)
    ours = [stem.copy() for stem in ours]
    assert all(np.array_equal(a, b) for a, b in zip(ours, wiener_stfts(estimates, mixture)))  # without a pool: the same
