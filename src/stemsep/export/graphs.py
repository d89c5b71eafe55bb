"""The TensorFlow functions that exported models are made of.

``spectrogram`` kind: magnitude segment [1, T, F, 2] -> {instrument: estimate}.
``waveform`` kind: a stereo chunk of ``(T - 1) * hop + frame`` samples ->
{instrument: the overlap-added, window-compensated iSTFT of its T frames},
with STFT, U-Nets, ratio masks and inverse STFT inside. Only ops that TFLite
has as builtins are used: framing by reshape/slice/concat, the forward RFFT
(RFFT2D), and the inverse DFT written with the forward RFFT (for a Hermitian
spectrum X of length N, ``x = Re(FFT(A) - i FFT(B)) / N`` with real A = Re X
and B = -Im X, each a real FFT whose upper half mirrors its lower half).
"""

from __future__ import annotations

import numpy as np

from stemsep._tf import import_tensorflow
from stemsep.config import ModelConfig
from stemsep.dsp.masks import EPSILON
from stemsep.dsp.stft import WINDOW_COMPENSATION, periodic_hann

tf = import_tensorflow()


def chunk_samples(cfg: ModelConfig) -> int:
    """Samples in one waveform-model chunk: T frames."""
    return (cfg.T - 1) * cfg.frame_step + cfg.frame_length


def spectrogram_function(keras_model, cfg: ModelConfig, instruments: tuple[str, ...]):
    """{instrument: estimate} for a [1, T, F, 2] magnitude segment."""
    index = {name: i for i, name in enumerate(cfg.instruments)}

    def separate(magnitude):
        outputs = keras_model(magnitude, training=False)
        if not isinstance(outputs, (list, tuple)):  # Keras returns a one-output model's tensor bare
            outputs = [outputs]
        return {name: tf.identity(outputs[index[name]], name=name) for name in instruments}

    return separate


def _frames(signal, cfg: ModelConfig):
    """[C, (T - 1) * hop + frame] -> [C, T, frame] without gather (frame is a multiple of hop)."""
    hop, length = cfg.frame_step, cfg.frame_length
    ratio = length // hop
    sub = tf.reshape(signal, [cfg.n_channels, cfg.T + ratio - 1, hop])
    return tf.concat([sub[:, q : q + cfg.T] for q in range(ratio)], axis=-1)


def _overlap_add(frames, cfg: ModelConfig):
    """[2, T, frame] -> [2, (T - 1) * hop + frame] (frame is a multiple of hop): the stems' channels."""
    hop, length = cfg.frame_step, cfg.frame_length
    ratio = length // hop
    parts = tf.reshape(frames, [cfg.output_channels, cfg.T, ratio, hop])
    total = None
    for q in range(ratio):
        shifted = tf.pad(parts[:, :, q], [[0, 0], [q, ratio - 1 - q], [0, 0]])
        total = shifted if total is None else total + shifted
    return tf.reshape(total, [cfg.output_channels, (cfg.T + ratio - 1) * hop])


def _inverse_rfft(real, imag, n: int):
    """Real inverse DFT of n // 2 + 1 bins [..., n // 2 + 1] with forward RFFTs only."""
    half = n // 2
    # Hermitian extension to n points: bins 1 .. n/2-1 mirrored.
    a = tf.concat([real, tf.reverse(real[..., 1:half], axis=[-1])], axis=-1)
    b = tf.concat([-imag, tf.reverse(imag[..., 1:half], axis=[-1])], axis=-1)
    fa, fb = tf.signal.rfft(a), tf.signal.rfft(b)
    p, q = tf.math.real(fa), tf.math.imag(fb)
    low = p - q  # output samples 0 .. n/2
    high = tf.reverse((p + q)[..., 1:half], axis=[-1])  # samples n/2+1 .. n-1
    return tf.concat([low, high], axis=-1) / n


def waveform_function(keras_model, cfg: ModelConfig):
    """{instrument: [samples, 2]} for a [samples, n_channels] chunk of the zero-prefixed signal (a mono
    model's two masks each multiply its one channel, as in ``separate.stream``)."""
    n = cfg.frame_length
    window = tf.constant(periodic_hann(n))
    n_out = len(cfg.instruments)
    if cfg.mask_extension != "zeros":
        raise ValueError("the waveform export supports mask_extension 'zeros' (all official models)")

    def separate(waveform):
        signal = tf.transpose(tf.reshape(waveform, [chunk_samples(cfg), cfg.n_channels]))  # keep C static
        spectrum = tf.signal.rfft(_frames(signal, cfg) * window)  # [C, T, bins]
        real, imag = tf.math.real(spectrum)[..., : cfg.F], tf.math.imag(spectrum)[..., : cfg.F]
        magnitude = tf.sqrt(real * real + imag * imag)
        estimates = keras_model(tf.transpose(magnitude, [1, 2, 0])[None], training=False)
        powered = [e[0] ** cfg.separation_exponent for e in estimates]  # [T, F, C]
        total = tf.add_n(powered) + EPSILON
        zeros = tf.zeros([cfg.output_channels, cfg.T, cfg.n_bins - cfg.F])
        outputs = {}
        for name, power in zip(cfg.instruments, powered):
            mask = tf.transpose((power + EPSILON / n_out) / total, [2, 0, 1])  # [C, T, F]
            frames = _inverse_rfft(tf.concat([real * mask, zeros], -1), tf.concat([imag * mask, zeros], -1), n)
            samples = _overlap_add(frames * window, cfg) * WINDOW_COMPENSATION
            outputs[name] = tf.transpose(samples, name=name)
        return outputs

    return separate


def check_waveform_math(cfg: ModelConfig) -> float:
    """Max error of the builtins-only inverse DFT against numpy's irfft (a self-test)."""
    rng = np.random.default_rng(0)
    spec = rng.normal(size=(3, cfg.n_bins)) + 1j * rng.normal(size=(3, cfg.n_bins))
    ours = _inverse_rfft(tf.constant(spec.real, tf.float32), tf.constant(spec.imag, tf.float32), cfg.frame_length).numpy()
    return float(np.abs(ours - np.fft.irfft(spec, cfg.frame_length)).max())
