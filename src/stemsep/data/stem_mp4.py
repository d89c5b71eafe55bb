"""Write multi-stream ``.stem.mp4`` files in MUSDB18's layout (AAC, one stream per source).

MUSDB18 stores a track as one MP4 with five AAC streams: the mixture, then
drums, bass, other, vocals. This writes the same layout (without Native
Instruments' stem metadata atom, which no reader here needs), so synthetic
datasets exercise exactly the decode path that real MUSDB18 takes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from stemsep.errors import StemsepError

FRAME = 1024  # AAC frame size


def write_stem_mp4(path: Path, sources: Sequence[np.ndarray], sample_rate: int, bitrate: int = 256_000) -> None:
    """``sources``: stereo float arrays [n, 2] of one length, stream order as MUSDB18. Atomic."""
    path = Path(path)
    length = sources[0].shape[0]
    if any(s.shape != (length, 2) for s in sources):
        raise StemsepError("Every source of a .stem.mp4 must be a stereo array of the same length.")
    temporary = path.with_name(f".{path.name}.part.mp4")
    try:
        with av.open(str(temporary), mode="w", format="mp4") as container:
            streams = []
            for _ in sources:
                stream = container.add_stream("aac", rate=sample_rate, layout="stereo")
                stream.bit_rate = bitrate
                streams.append(stream)
            for start in range(0, length, FRAME):
                for stream, source in zip(streams, sources):
                    block = np.ascontiguousarray(source[start : start + FRAME].T, dtype=np.float32)
                    frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
                    frame.sample_rate = sample_rate
                    frame.pts = start
                    frame.time_base = Fraction(1, sample_rate)
                    container.mux(stream.encode(frame))
            for stream in streams:
                container.mux(stream.encode(None))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
