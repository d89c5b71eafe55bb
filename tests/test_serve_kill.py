"""A `stemsep serve` killed with SIGKILL in the middle of a job loses nothing: restarted on the same
--data-dir it runs the interrupted job again from the start and the queued ones after it, their stems
equal (>= 100 dB) those of `Separator.separate_to_file` run directly on the same songs, and no partial
file is left anywhere in the data folder.

The server is a real process on 127.0.0.1 with 1 worker; three songs (24, 6 and 6 s) are queued
and the server is killed once the first has reported progress, before it ends. 35-45 s on 2 shared cores.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile

from tests.helpers import music_like, snr_db, write_audio

pytest.importorskip("fastapi")

from stemsep.serve.admission import output_options
from stemsep.serve.jobs import JobStore

RATE = 44100
TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server:
    """`python -m stemsep serve` as a child process on a free loopback port."""

    def __init__(self, data_dir: Path, model_dir: Path, log: Path) -> None:
        self.url = f"http://127.0.0.1:{_free_port()}"
        command = [sys.executable, "-m", "stemsep", "serve", "--port", self.url.rsplit(":", 1)[1], "--workers", "1"]
        command += ["--data-dir", str(data_dir), "--model-dir", str(model_dir)]
        self.log = log
        with log.open("ab") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.url, timeout=30)
        deadline = time.monotonic() + TIMEOUT_S
        while not self._healthy():
            assert self.process.poll() is None, f"the server exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the server did not start:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)

    def _healthy(self) -> bool:
        try:
            return self.http.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def job(self, job_id: str) -> dict:
        return self.http.get(f"/api/jobs/{job_id}").json()

    def close(self, sig: int = signal.SIGTERM) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def servers():
    started: list[_Server] = []
    yield started
    for server in started:
        server.close(signal.SIGKILL)


def test_a_server_killed_mid_job_finishes_every_job_after_a_restart(tmp_path, official_2stems, separator_2stems, servers):
    songs = [
        write_audio(tmp_path / f"song{index}.wav", music_like(seconds, seed=index), RATE, "pcm_s16le")
        for index, seconds in enumerate((24.0, 6.0, 6.0))
    ]
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    servers.append(first := _Server(data_dir, official_2stems.parent, log))
    ids = []
    for song in songs:
        response = first.http.post("/api/jobs", files={"file": (song.name, song.read_bytes())})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

    deadline = time.monotonic() + TIMEOUT_S
    while not ((job := first.job(ids[0]))["state"] == "running" and job["progress"] > 0):  # one chunk of two done
        assert job["state"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.05)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(30)
    store = JobStore(data_dir / "jobs.sqlite3", data_dir / "jobs")
    assert [store.get(job_id).state for job_id in ids] == ["running", "queued", "queued"], "not killed mid-job"
    store.close()
    assert list((data_dir / "jobs" / ids[0] / "stems").glob(".*.partial")), "the killed job left no partial stems"

    servers.append(second := _Server(data_dir, official_2stems.parent, log))
    for job_id in ids:
        while (job := second.job(job_id))["state"] != "done":
            assert job["state"] in ("queued", "running") and time.monotonic() < deadline + TIMEOUT_S, job
            time.sleep(0.1)

    output = output_options("wav", None)
    for song, job_id in zip(songs, ids):
        reference = separator_2stems.separate_to_file(song, tmp_path / "reference" / song.stem, output)
        for stem, path in reference.paths.items():
            served, rate = soundfile.read(io.BytesIO(second.http.get(f"/api/jobs/{job_id}/stems/{stem}").content))
            expected, _ = soundfile.read(path)
            assert (served.shape, rate) == (expected.shape, RATE)
            assert np.array_equal(served, expected) or snr_db(expected, served) >= 100, (song.name, stem)
    second.close()

    leftovers = [p for p in data_dir.rglob("*") if p.name.startswith(".") or p.name.endswith((".partial", ".part"))]
    assert leftovers == []
    for job_id in ids:
        folder = data_dir / "jobs" / job_id
        assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [
            "stems",
            "stems/accompaniment.wav",
            "stems/vocals.wav",
            "upload.wav",
        ]
    assert os.listdir(data_dir / "jobs") and sorted(os.listdir(data_dir / "jobs")) == sorted(ids)
