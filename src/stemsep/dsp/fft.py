"""The real FFTs of the STFT and its inverse: scipy's pocketfft extension, loaded on its own.

numpy 2's ``rfft`` measured 4x slower than the same pocketfft library as scipy
builds it (4096-point float32 frames: 34 vs 8.3 us each on this project's
machines) and two threads did not halve its time; numpy's ``irfft`` is as fast
on one thread, but only pocketfft's writes into a buffer the caller reuses
(every fresh large array costs its page faults). ``import scipy.fft`` would
bring the module but costs ~0.35 s of start-up (its array-API layer), more
than the whole saving on a short song; the compiled module alone loads in
~1 ms from its file. Where scipy's layout differs (another version), numpy
computes the same numbers.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np


@functools.cache
def pocketfft() -> ModuleType | None:
    """scipy's compiled ``pypocketfft`` module, without importing the ``scipy`` package; None if absent."""
    spec = importlib.util.find_spec("scipy")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "fft" / "_pocketfft"
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = folder / f"pypocketfft{suffix}"
        if path.is_file():
            loader = importlib.machinery.ExtensionFileLoader("pypocketfft", str(path))
            module_spec = importlib.util.spec_from_file_location("pypocketfft", path, loader=loader)
            if module_spec is None:
                return None
            try:
                module = importlib.util.module_from_spec(module_spec)
                loader.exec_module(module)
            except ImportError:  # built for another numpy
                return None
            return module if hasattr(module, "r2c") else None
    return None


def rfft_into(frames: np.ndarray, out: np.ndarray, threads: int = 1) -> None:
    """``out[...] = numpy.fft.rfft(frames, axis=-1)`` for real ``frames`` and complex ``out`` of the same precision."""
    module = pocketfft()
    if module is None:
        np.fft.rfft(frames, axis=-1, out=out)
        return
    module.r2c(frames, (frames.ndim - 1,), True, 0, out, threads)


def irfft_into(spectra: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = numpy.fft.irfft(spectra, n=out.shape[-1], axis=-1)`` for complex64 ``spectra``, float32 ``out``."""
    module = pocketfft()
    if module is None:
        out[...] = np.fft.irfft(spectra, n=out.shape[-1], axis=-1)
        return
    module.c2r(spectra, (spectra.ndim - 1,), out.shape[-1], False, 2, out, 1)  # 2: divide by n, as numpy; 1 thread
