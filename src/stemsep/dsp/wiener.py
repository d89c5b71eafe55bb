"""Multichannel Wiener filtering (``--mwf``) through norbert, as the reference."""

from __future__ import annotations

import numpy as np

from stemsep.dsp.masks import extend_band


def wiener_stfts(estimates: list[np.ndarray], stft: np.ndarray) -> list[np.ndarray]:
    """``norbert.wiener(v, x)`` with its defaults; v = U-Net magnitudes, zero above F.

    estimates: per instrument [frames, F, channels]; stft: [frames, bins, channels].
    """
    import norbert

    n_bins = stft.shape[1]
    v = np.stack([extend_band(e, n_bins, "zeros", axis=1) for e in estimates], axis=-1)
    y = norbert.wiener(v, stft)
    return [np.ascontiguousarray(y[..., i], dtype=np.complex64) for i in range(len(estimates))]
