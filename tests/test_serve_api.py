"""The HTTP API of `stemsep serve` keeps its contract: every endpoint answers as documented, uploads
are refused with stemsep's exact sentence (not audio, cut short, empty, too large, too long, bad
options) and leave nothing behind, the token guards /api only, stems are served with Range requests,
the event stream ends with `done`, deletion stops a running job without partial files, ids are never
paths, and 20 concurrent uploads to 1 worker are each separated or refused with 503 + Retry-After.

A real uvicorn server runs in a thread on 127.0.0.1 (streaming and concurrency go through real
sockets); the token, CORS and the byte limit mid-stream are checked in process (httpx's ASGI transport,
the app's lifespan run around it). Songs are 1-21 s; the module takes 30-45 s on 2 shared cores.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import json
import socket
import sys
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile

from tests.helpers import music_like, write_audio

pytest.importorskip("fastapi")
import uvicorn

from stemsep.serve import ServeSettings, create_app
from stemsep.serve.events import job_events
from stemsep.serve.jobs import Job, JobStore, new_job_id

RATE = 44100
JOB_KEYS = {"id", "state", "progress", "error", "stems", "model", "codec", "filename", "duration", "created"}
TIMEOUT_S = 60


# -- harness ---------------------------------------------------------------------


@contextlib.contextmanager
def running_server(settings: ServeSettings):
    """uvicorn serving ``create_app(settings)`` in a thread on a free loopback port; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@contextlib.asynccontextmanager
async def in_process(settings: ServeSettings):
    """An httpx client calling ``create_app(settings)`` directly, inside the app's lifespan."""
    app = create_app(settings)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://stemsep.test")
    async with app.router.lifespan_context(app), client as http:
        http.app = app
        yield http


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("songs")
    return {
        "short": write_audio(folder / "short.wav", music_like(1.5, seed=1), RATE),
        "one": write_audio(folder / "one.wav", music_like(1.0, seed=2), RATE),
        # Two chunks (one progress report on the way); mono 22.05 kHz 16-bit to stay under 1 MB.
        "medium": write_audio(folder / "medium.wav", music_like(13.0, 22050, 1, seed=3), 22050, "pcm_s16le"),
        "long": write_audio(folder / "long.wav", music_like(21.0, 8000, 1, seed=4), 8000, "pcm_s16le"),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory, official_2stems):
    """One worker, 3 places in the queue, 1 MB and 20 s at most; yields (URL, settings)."""
    settings = ServeSettings(
        data_dir=tmp_path_factory.mktemp("serve"),
        model_dir=official_2stems.parent,
        queue_size=3,
        max_upload_mb=1,
        max_duration_s=20,
        keepalive_s=0.5,
    )
    with running_server(settings) as url:
        yield url, settings


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server[0], timeout=TIMEOUT_S) as http:
        yield http


def post_song(client: httpx.Client, path: Path, name: str | None = None, **fields: str) -> httpx.Response:
    return client.post("/api/jobs", files={"file": (name or path.name, path.read_bytes())}, data=fields)


def wait_done(client: httpx.Client, job_id: str, timeout: float = TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def job_folders(settings: ServeSettings) -> set[str]:
    return {path.name for path in settings.jobs_dir.iterdir()}


def read_events(response: httpx.Response) -> list[tuple[str, str]]:
    """(event name, data) per server-sent event, (':', text) per comment, until the stream ends."""
    events, name, data = [], None, []
    for line in response.iter_lines():
        if line.startswith(":"):
            events.append((":", line))
        elif not line:
            if name or data:
                events.append((name or "message", "\n".join(data)))
            name, data = None, []
        else:
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            name, data = (value, data) if key == "event" else (name, [*data, value] if key == "data" else data)
    return events


# -- a job from upload to download --------------------------------------------------


def test_an_uploaded_song_is_separated_and_each_stem_downloads_whole(client, songs):
    response = post_song(client, songs["short"])
    assert response.status_code == 201, response.text
    job = response.json()
    assert set(job) == JOB_KEYS
    assert response.headers["location"] == f"/api/jobs/{job['id']}"
    assert (job["state"], job["stems"], job["model"], job["codec"]) == (
        "queued",
        ["vocals", "accompaniment"],
        "spleeter:2stems",
        "wav",
    )
    assert (job["filename"], job["duration"], job["error"]) == ("short.wav", 1.5, None)
    assert wait_done(client, job["id"]) | {"created": job["created"]} == job | {"state": "done", "progress": 1.0}
    for stem in job["stems"]:
        response = client.get(f"/api/jobs/{job['id']}/stems/{stem}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/wav"
        assert response.headers["content-disposition"] == f'attachment; filename="short_{stem}.wav"'
        samples, rate = soundfile.read(io.BytesIO(response.content))
        assert (samples.shape, rate) == ((int(1.5 * RATE), 2), RATE)


def test_stems_and_codec_are_taken_from_the_form(client, songs):
    job = post_song(client, songs["short"], "My Song (live).wav", stems="vocals", codec="flac").json()
    assert (job["stems"], job["codec"]) == (["vocals"], "flac")
    assert wait_done(client, job["id"])["state"] == "done"
    response = client.get(f"/api/jobs/{job['id']}/stems/vocals")
    assert response.headers["content-type"] == "audio/flac"
    assert response.headers["content-disposition"] == 'attachment; filename="My_Song_live_vocals.flac"'
    assert soundfile.read(io.BytesIO(response.content))[0].shape == (int(1.5 * RATE), 2)
    response = client.get(f"/api/jobs/{job['id']}/stems/accompaniment")
    assert response.status_code == 404
    assert response.json() == {"detail": "This job has no stem 'accompaniment'; it wrote vocals."}


def test_range_requests_get_206_with_content_range_and_the_exact_bytes(client, songs):
    job = post_song(client, songs["one"]).json()
    wait_done(client, job["id"])
    whole = client.get(f"/api/jobs/{job['id']}/stems/vocals").content
    response = client.get(f"/api/jobs/{job['id']}/stems/vocals", headers={"Range": "bytes=100-1099"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 100-1099/{len(whole)}"
    assert response.content == whole[100:1100]
    tail = client.get(f"/api/jobs/{job['id']}/stems/vocals", headers={"Range": "bytes=-10"})
    assert (tail.status_code, tail.content) == (206, whole[-10:])


def test_the_zip_holds_every_stem_and_is_built_once(client, songs, server):
    job = post_song(client, songs["one"]).json()
    wait_done(client, job["id"])
    response = client.get(f"/api/jobs/{job['id']}/zip")
    assert (response.status_code, response.headers["content-type"]) == (200, "application/zip")
    assert response.headers["content-disposition"] == 'attachment; filename="one_stems.zip"'
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.namelist() == ["one_vocals.wav", "one_accompaniment.wav"]
    assert archive.read("one_vocals.wav") == client.get(f"/api/jobs/{job['id']}/stems/vocals").content
    built = (server[1].jobs_dir / job["id"] / "stems.zip").stat().st_mtime_ns
    assert client.get(f"/api/jobs/{job['id']}/zip").content == response.content
    assert (server[1].jobs_dir / job["id"] / "stems.zip").stat().st_mtime_ns == built


def test_the_event_stream_sends_progress_then_done_and_ends(client, songs):
    job = post_song(client, songs["medium"]).json()
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [event for event in read_events(response) if event[0] != ":"]
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"progress"}, names
    states = [json.loads(data)["state"] for _, data in events]
    assert states[0] in ("queued", "running") and states[-1] == "done"
    assert json.loads(events[-1][1]) | {"created": job["created"]} == job | {"state": "done", "progress": 1.0}
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as again:  # a reconnection: the end, at once
        assert [name for name, _ in read_events(again)] == ["done"]


def test_an_idle_event_stream_gets_keepalive_comments(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3", tmp_path / "jobs")
    job = store.add(Job(new_job_id(), "spleeter:2stems", "wav", ("vocals",), "a.wav", 1.0, "upload.wav"))

    async def first(count: int) -> list[str]:
        stream = job_events(store, job.id, keepalive_s=0.3)
        chunks = [await anext(stream) for _ in range(count)]
        await stream.aclose()
        return chunks

    started = time.monotonic()
    chunks = asyncio.run(first(3))
    assert chunks[0].startswith("event: progress\ndata: {") and chunks[1:] == [": keep-alive\n\n"] * 2
    assert 0.5 < time.monotonic() - started < 3
    store.close()


# -- refusals -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, example_mp3) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    (folder / "notes.txt").write_text("not a song\n" * 100)
    (folder / "cut.mp3").write_bytes(example_mp3.read_bytes()[:120_000])
    (folder / "empty.mp3").write_bytes(b"")
    (folder / "big.wav").write_bytes(np.random.default_rng(0).bytes(1_100_000))
    return {path.name: path for path in folder.iterdir()}


@pytest.mark.parametrize(
    ("name", "status", "sentence"),
    [
        ("notes.txt", 415, "notes.txt has no audio stream."),  # FFmpeg reads .txt as subtitles
        ("cut.mp3", 422, "cut.mp3 is truncated: it declares 10.9 s but only 5.0 s decode."),
        ("empty.mp3", 415, "empty.mp3 is not an audio file FFmpeg can read."),
        ("big.wav", 413, "The upload is larger than this server's limit of 1 MB."),
    ],
)
def test_a_bad_upload_is_refused_with_its_sentence_and_deleted(client, server, bad_files, name, status, sentence):
    before = job_folders(server[1])
    response = post_song(client, bad_files[name])
    assert (response.status_code, response.json()) == (status, {"detail": sentence})
    assert job_folders(server[1]) == before


def test_a_song_longer_than_the_limit_is_refused_with_413(client, server, songs):
    response = post_song(client, songs["long"])
    assert response.status_code == 413
    assert response.json() == {"detail": "long.wav lasts 21.0 s, longer than this server's limit of 20 s."}


@pytest.mark.parametrize(
    ("fields", "sentence"),
    [
        ({"model": "spleeter:9stems"}, "Unknown model 'spleeter:9stems'; known presets are spleeter:2stems, "),
        ({"model": "/etc/stemsep/model"}, "Unknown model '/etc/stemsep/model'; this server runs the presets spleeter:2stems, "),
        ({"codec": "stem.mp4"}, "The codec 'stem.mp4' is not served here; choose wav, flac, mp3, m4a, ogg, opus."),
        ({"stems": "guitar"}, "This model has no 'guitar' stem; its instruments are vocals, accompaniment."),
        ({"stems": ","}, "--stems needs at least one instrument name."),
    ],
)
def test_bad_options_are_refused_with_422_and_stemseps_sentence(client, server, songs, fields, sentence):
    before = job_folders(server[1])
    response = post_song(client, songs["one"], **fields)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(sentence)
    assert job_folders(server[1]) == before


def test_a_request_without_a_song_is_refused(client):
    response = client.post("/api/jobs", data={"codec": "wav"}, files={"other": ("x", b"1")})
    assert (response.status_code, response.json()) == (
        422,
        {"detail": "The form has no file: send the song in the field 'file'."},
    )
    response = client.post("/api/jobs", content=b"{}", headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()) == (
        415,
        {"detail": "Send the song as multipart/form-data, in the field 'file'."},
    )


def test_a_declared_content_length_over_the_limit_is_refused_before_the_body(server):
    host, port = server[0].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 5000000000\r\n\r\n"
        )
        response = sock.makefile("rb")
        status = response.readline()
        headers = dict(line.decode().lower().split(": ", 1) for line in iter(response.readline, b"\r\n"))
        body = response.read(int(headers["content-length"]))
    assert status.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body) == {"detail": "The upload is larger than this server's limit of 1 MB."}


@pytest.mark.anyio
async def test_an_upload_stops_being_read_as_soon_as_it_passes_the_limit(tmp_path):
    settings = ServeSettings(data_dir=tmp_path, max_upload_mb=0.5)
    chunk, sent = b"\0" * 65536, []

    async def body():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for _ in range(100):  # 6.5 MB if all of it were read
            sent.append(len(chunk))
            yield chunk

    async with in_process(settings) as http:
        response = await http.post("/api/jobs", content=body(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert (response.status_code, response.json()) == (
        413,
        {"detail": "The upload is larger than this server's limit of 0.5 MB."},
    )
    assert sum(sent) <= 500_000 + len(chunk)
    assert list(settings.jobs_dir.iterdir()) == []


# -- the token, ids, deletion ---------------------------------------------------------------


@pytest.mark.anyio
async def test_the_token_guards_the_api_and_not_the_page_or_health(tmp_path):
    async with in_process(ServeSettings(data_dir=tmp_path, token="s3cret")) as http:
        refused = await http.get("/api/models")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert refused.json() == {
            "detail": "This server needs its token: send Authorization: Bearer TOKEN, or add ?token=TOKEN to the address."
        }
        assert (await http.get("/api/models", headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await http.get("/api/models?token=wrong")).status_code == 401
        assert (await http.get("/api/jobs/" + "0" * 32)).status_code == 401  # not even whether a job exists
        assert (await http.post("/api/jobs")).status_code == 401
        assert (await http.get("/api/models", headers={"Authorization": "Bearer s3cret"})).status_code == 200
        assert (await http.get("/api/models?token=s3cret")).status_code == 200
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/")).status_code == 200


def test_unknown_and_path_like_ids_get_404_and_touch_no_file(client, server):
    missing = {"detail": "There is no job with this id."}
    for path in (f"/api/jobs/{'0' * 32}", "/api/jobs/abc", "/api/jobs/..", "/api/jobs/%2E%2E", f"/api/jobs/{'A' * 32}"):
        for suffix in ("", "/events", "/zip", "/stems/vocals"):
            response = client.get(path + suffix)
            assert response.status_code == 404, (path, suffix)
            assert "detail" in response.json()
        assert client.get(path).json() == missing or path.endswith("..")
    for path in (
        "/api/jobs/..%2Fjobs.sqlite3",
        "/api/jobs/%2e%2e%2f%2e%2e%2fjobs.sqlite3",
        "/static/../jobs.sqlite3",
        "/static/%2e%2e/jobs.sqlite3",
        "/jobs.sqlite3",
        "/jobs",
    ):
        response = client.get(path)
        assert response.status_code == 404 and "detail" in response.json(), path
    assert client.delete(f"/api/jobs/{'0' * 32}").json() == missing
    assert client.get("/static/").status_code == 404  # no listing


def test_a_stem_name_must_be_one_the_job_wrote(client, songs):
    job = post_song(client, songs["one"]).json()
    wait_done(client, job["id"])
    for name in ("..%2Fupload.wav", "upload", "vocals.wav", "%2E%2E"):
        assert client.get(f"/api/jobs/{job['id']}/stems/{name}").status_code == 404, name


def test_delete_removes_a_finished_job_and_its_files(client, server, songs):
    job = post_song(client, songs["one"]).json()
    wait_done(client, job["id"])
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 204
    assert client.get(f"/api/jobs/{job['id']}").status_code == 404
    assert job["id"] not in job_folders(server[1])


def test_delete_stops_a_running_job_and_leaves_no_partial_file(client, server, songs):
    job = post_song(client, songs["medium"]).json()
    deadline = time.monotonic() + TIMEOUT_S
    while client.get(f"/api/jobs/{job['id']}").json()["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 204
    assert client.get(f"/api/jobs/{job['id']}").status_code == 404
    while client.get("/healthz").json()["running"]:  # stopped at its next progress report (~12 s of song)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["id"] not in job_folders(server[1])
    assert not list(server[1].jobs_dir.rglob("*.partial"))


# -- the queue ------------------------------------------------------------------------------


def test_twenty_concurrent_uploads_are_each_separated_or_refused_with_503(server, songs):
    url, settings = server
    data = songs["one"].read_bytes()
    before = job_folders(settings)

    def upload(index: int) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=TIMEOUT_S) as http:
            return http.post("/api/jobs", files={"file": (f"song{index}.wav", data)})

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(upload, range(20)))
    accepted = [r.json() for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert accepted, "no upload was accepted"
    for response in refused:
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["detail"].startswith("The queue is full (3 songs are waiting)")
    with httpx.Client(base_url=url, timeout=TIMEOUT_S) as http:
        for job in accepted:
            assert wait_done(http, job["id"])["state"] == "done"
            for stem in job["stems"]:
                samples, rate = soundfile.read(io.BytesIO(http.get(f"/api/jobs/{job['id']}/stems/{stem}").content))
                assert (samples.shape, rate) == ((RATE, 2), RATE)
        assert http.get("/healthz").json() == {"status": "ok", "queued": 0, "running": 0, "workers": 1}
    assert job_folders(settings) - before == {job["id"] for job in accepted}  # nothing kept of the refused
    assert time.monotonic() - started < 60


# -- the rest of the surface ------------------------------------------------------------------


def test_models_lists_every_preset_and_whether_it_is_here(client):
    models = client.get("/api/models").json()
    assert [m["name"] for m in models] == [
        f"spleeter:{n}" for n in ("2stems", "4stems", "5stems", "2stems-16kHz", "4stems-16kHz", "5stems-16kHz")
    ]
    assert models[0] == {"name": "spleeter:2stems", "instruments": ["vocals", "accompaniment"], "cached": True}
    assert models[2]["instruments"] == ["vocals", "piano", "drums", "bass", "other"]


def test_health_the_page_and_the_schema_are_served(client):
    assert client.get("/healthz").json() == {"status": "ok", "queued": 0, "running": 0, "workers": 1}
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    schema = client.get("/openapi.json").json()
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/events", "/api/models", "/healthz"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/api/jobs"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


@pytest.mark.anyio
async def test_cors_headers_are_sent_only_for_the_origin_given(tmp_path):
    origin = {"Origin": "http://example.test"}
    async with in_process(ServeSettings(data_dir=tmp_path / "a")) as http:
        assert "access-control-allow-origin" not in (await http.get("/api/models", headers=origin)).headers
    async with in_process(ServeSettings(data_dir=tmp_path / "b", cors_origin="http://example.test")) as http:
        assert (await http.get("/api/models", headers=origin)).headers["access-control-allow-origin"] == "http://example.test"


@pytest.mark.anyio
async def test_start_up_removes_expired_jobs_and_folders_of_no_job(tmp_path):
    settings = ServeSettings(data_dir=tmp_path, keep_hours=1e-9)
    store = JobStore(settings.database, settings.jobs_dir)
    old = store.add(Job(new_job_id(), "spleeter:2stems", "wav", ("vocals",), "a.wav", 1.0, "upload.wav"))
    store.start(old.id)
    store.finish(old.id)
    (settings.jobs_dir / old.id / "stems").mkdir(parents=True)
    stray = settings.jobs_dir / new_job_id()  # an upload cut short by a kill
    stray.mkdir()
    store.close()
    time.sleep(0.01)
    async with in_process(settings) as http:
        assert (await http.get(f"/api/jobs/{old.id}")).status_code == 404
    assert list(settings.jobs_dir.iterdir()) == []


@pytest.mark.anyio
async def test_a_job_that_fails_records_its_one_sentence(tmp_path, official_2stems):
    settings = ServeSettings(data_dir=tmp_path, model_dir=official_2stems.parent)
    async with in_process(settings) as http:
        pool = http.app.state.service.pool
        job = pool.submit(Job(new_job_id(), "spleeter:2stems", "wav", ("vocals",), "lost.wav", 1.0, "upload.wav"))
        deadline = time.monotonic() + TIMEOUT_S
        while (state := (await http.get(f"/api/jobs/{job.id}")).json())["state"] not in ("done", "failed"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    assert (state["state"], state["error"]) == ("failed", "lost.wav does not exist.")


# -- the command -------------------------------------------------------------------------------


def test_the_command_without_fastapi_says_what_to_install(monkeypatch):
    from typer.testing import CliRunner

    from stemsep.cli import app

    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi raises ImportError
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 1
    sentence = "stemsep serve needs FastAPI, uvicorn and python-multipart: pip install 'stemsep[serve]'."
    assert result.output.strip() == f"Error: {sentence}"


def test_the_command_refuses_unusable_settings_in_one_sentence(tmp_path):
    from typer.testing import CliRunner

    from stemsep.cli import app

    result = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path), "--workers", "0", "--max-upload-mb", "-1"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: The server settings are not usable: --workers must be at least 1 (got 0); "
        "--max-upload-mb must be a positive number (got -1.0)."
    )
