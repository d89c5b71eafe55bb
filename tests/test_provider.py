"""Model resolution and the GitHub release download, against a local HTTP server."""

import functools
import hashlib
import http.server
import io
import json
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
