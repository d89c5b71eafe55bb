"""Audio in and out: PyAV (bundled FFmpeg) decode/encode, soxr resampling."""
