"""Model resolution and the GitHub release download, against a local HTTP server."""

import errno
import functools
import hashlib
import http.server
import io
import json
import os
import re
import tarfile
import threading
import time

import pytest

from stemsep.errors import StemsepError
from stemsep.model.provider import PROBE, resolve_pretrained


def _archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in {
            "checkpoint": b'model_checkpoint_path: "model"\n',
            "model.index": b"idx",
            "model.data-00000-of-00001": b"d",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture
def release_server(tmp_path, monkeypatch):
    """Serves <repo>/releases/download/v1.4.0/{4stems.tar.gz,checksum.json} on 127.0.0.1."""
    root = tmp_path / "www"
    release = root / "deezer" / "spleeter" / "releases" / "download" / "v1.4.0"
    release.mkdir(parents=True)
    archive = _archive()
    (release / "4stems.tar.gz").write_bytes(archive)
    (release / "checksum.json").write_text(json.dumps({"4stems": hashlib.sha256(archive).hexdigest(), "5stems": "0" * 64}))
    (release / "5stems.tar.gz").write_bytes(archive)  # does not match its published checksum
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("GITHUB_HOST", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("STEMSEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MODEL_PATH", raising=False)
    yield tmp_path / "cache"
    server.shutdown()


def test_release_is_downloaded_verified_and_cached(release_server):
    folder = resolve_pretrained("4stems")
    assert folder == release_server / "models" / "4stems"
    assert (folder / "model.index").read_bytes() == b"idx" and (folder / PROBE).exists()
    assert resolve_pretrained("4stems") == folder  # second time: from the cache


def test_checksum_mismatch_leaves_no_model(release_server):
    with pytest.raises(StemsepError, match="does not match its published sha256"):
        resolve_pretrained("5stems")
    assert not (release_server / "models" / "5stems").exists()
    assert [p.name for p in (release_server / "models").iterdir()] == []


def test_local_folders_come_first(tmp_path, monkeypatch):
    monkeypatch.setenv("STEMSEP_CACHE", str(tmp_path / "cache"))
    (tmp_path / "mine" / "4stems").mkdir(parents=True)
    (tmp_path / "mine" / "4stems" / "model.index").write_bytes(b"x")
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "mine"))
    assert resolve_pretrained("4stems") == tmp_path / "mine" / "4stems"
    (tmp_path / "flag" / "4stems").mkdir(parents=True)
    (tmp_path / "flag" / "4stems" / "model.index").write_bytes(b"x")
    assert resolve_pretrained("4stems", tmp_path / "flag") == tmp_path / "flag" / "4stems"


def test_offline_is_a_fast_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("STEMSEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MODEL_PATH", raising=False)
    monkeypatch.setenv("GITHUB_HOST", "http://127.0.0.1:9")  # discard port: connection refused
    start = time.monotonic()
    with pytest.raises(StemsepError, match=r"spleeter:4stems is not available offline.*MODEL_PATH"):
        resolve_pretrained("4stems")
    assert time.monotonic() - start < 5


def _ours(stderr: str) -> list[str]:
    """stderr without the test server's request log."""
    return [line for line in stderr.splitlines() if not line.startswith("127.0.0.1 - -")]


def test_unwritable_cache_downloads_for_this_run_only(release_server, tmp_path, monkeypatch, capfd):
    from stemsep.cache import cache_root

    blocker = tmp_path / "cache-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("STEMSEP_CACHE", str(blocker))
    folder = resolve_pretrained("4stems")
    assert (folder / "model.index").read_bytes() == b"idx" and cache_root() not in folder.parents
    pattern = (
        rf"The cache {re.escape(str(blocker))}/models is not writable \(not a directory\): spleeter:4stems is downloaded "
        r"for this run only; set STEMSEP_CACHE to a writable folder to keep it\."
    )
    lines = _ours(capfd.readouterr().err)
    assert len(lines) == 1 and re.fullmatch(pattern, lines[0]), lines
    assert resolve_pretrained("4stems") == folder  # not downloaded twice in one process
    assert _ours(capfd.readouterr().err) == []


def test_a_full_disk_during_extraction_is_one_sentence(release_server, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tarfile.TarFile, "extractall", no_space)
    sentence = rf"Cannot store 4stems in {re.escape(str(release_server))}/models \(no space left on device\)"
    with pytest.raises(StemsepError, match=sentence):
        resolve_pretrained("4stems")
    assert [p.name for p in (release_server / "models").iterdir()] == []


def test_unreadable_folders_hold_no_model(tmp_path, monkeypatch):
    from pathlib import Path

    from stemsep.model.provider import has_checkpoint

    def denied(self):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "is_dir", denied)
    assert has_checkpoint(tmp_path) is False
