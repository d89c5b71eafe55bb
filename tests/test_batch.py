"""`stemsep batch`: a catalogue separated on a Ray cluster gives `stemsep separate`'s stems bit for bit,
reports a broken file with its sentence, resumes from its results table, refuses colliding outputs before
any work, and survives a worker node's death mid-run with nothing partial and nothing missing.

The cluster is real and local: a head and one worker node started with `ray start` as separate
processes on loopback addresses, one CPU each, in a temporary folder of their own; the test stops
exactly those processes (``ray stop`` would stop every Ray process of the machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemsep.batch.manifest import read_manifest
from stemsep.batch.results import DONE, FAILED, PENDING, RUNNING, TABLE_NAME, ResultsTable, Row
from stemsep.batch.summary import summarize
from stemsep.errors import StemsepError
from tests.helpers import music_like, write_audio

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
GOOD_SONGS = 11
STEMS = ("vocals", "accompaniment")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


# Ray's token authentication off: a local ray.init() would otherwise write ~/.ray/auth_token, which every
# later `ray start` on this machine then requires.
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "stemsep.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=RAY_ENV, **kwargs)


def table_rows(output: Path) -> dict[str, tuple]:
    with sqlite3.connect(output / TABLE_NAME) as db:
        return {Path(r[0]).name: r[1:] for r in db.execute("SELECT path, state, node, error, attempts, run FROM files")}


# -- the manifest, the table and the summary (no Ray) -----------------------------------------


def test_a_folder_is_searched_recursively_and_a_list_or_csv_resolves_paths_from_its_own_folder(tmp_path):
    (tmp_path / "music" / "disc 2").mkdir(parents=True)
    for name in ("music/a.wav", "music/disc 2/b.flac", "music/cover.jpg"):
        (tmp_path / name).write_bytes(b"x")
    folder = read_manifest(tmp_path / "music")
    assert [p.name for p in folder.songs] == ["a.wav", "b.flac"] and folder.skipped_non_audio == 1
    assert all(p.is_absolute() for p in folder.songs)

    (tmp_path / "list.txt").write_text("# my songs\nmusic/a.wav\n\n/elsewhere/c.mp3\nmusic/a.wav\n")
    listed = read_manifest(tmp_path / "list.txt")
    assert listed.songs == [tmp_path / "music" / "a.wav", Path("/elsewhere/c.mp3")] and listed.duplicates == 1

    (tmp_path / "songs.csv").write_text("artist,Path,duration\nX,music/a.wav,3\nY,music/disc 2/b.flac,4\n")
    assert read_manifest(tmp_path / "songs.csv").songs == [tmp_path / "music" / "a.wav", tmp_path / "music" / "disc 2" / "b.flac"]


def test_a_csv_without_a_path_column_or_a_missing_manifest_is_one_sentence(tmp_path):
    (tmp_path / "songs.csv").write_text("file,artist\na.wav,X\n")
    with pytest.raises(StemsepError, match=r"has no 'path' column \(its columns: file, artist\)\.$"):
        read_manifest(tmp_path / "songs.csv")
    with pytest.raises(StemsepError, match="does not exist: give a folder, a text file of paths or a CSV"):
        read_manifest(tmp_path / "nothing.txt")


def test_a_rerun_redoes_pending_and_interrupted_songs_and_failed_ones_only_with_retry_failed(tmp_path):
    from stemsep.batch.runner import _wanted

    table = ResultsTable(tmp_path / TABLE_NAME)
    songs = [tmp_path / f"{name}.wav" for name in ("new", "interrupted", "done", "failed")]
    table.add(songs)
    table.start(songs[1])  # sent to a worker; the driver died before it answered
    table.finish_done(songs[2], 1.5, "10.0.0.1", run=1)
    table.finish_failed(songs[3], "failed.wav is not audio.", None, run=1)
    table.add(songs)  # a re-run adds nothing twice
    rows = table.rows(songs)
    assert [r.state for r in rows] == [PENDING, RUNNING, DONE, FAILED] and rows[1].attempts == 1
    assert [r.path.stem for r in rows if _wanted(r, retry_failed=False)] == ["new", "interrupted"]
    assert [r.path.stem for r in rows if _wanted(r, retry_failed=True)] == ["new", "interrupted", "failed"]


def test_songs_are_handed_out_longest_first_and_those_of_unknown_length_before_all():
    pytest.importorskip("ray")
    from stemsep.batch.runner import _shortest_first

    queue = sorted([Row(Path(f"{d}.wav"), duration_s=d) for d in (30.0, 240.0, None, 3.5, 600.0)], key=_shortest_first)
    assert [queue.pop().duration_s for _ in range(5)] == [None, 600.0, 240.0, 30.0, 3.5]


def test_a_rerun_with_options_that_change_the_stems_is_refused(tmp_path):
    table = ResultsTable(tmp_path / TABLE_NAME)
    table.check_options({"codec": "wav", "params": "spleeter:2stems"})
    table.check_options({"codec": "wav", "params": "spleeter:2stems"})
    with pytest.raises(StemsepError, match=r"other options \(codec='wav'\); give the same options to resume it"):
        table.check_options({"codec": "mp3", "params": "spleeter:2stems"})


def test_the_summary_lists_failures_with_their_sentence_and_throughput_per_node(tmp_path):
    manifest = read_manifest(_listed(tmp_path, ["a.wav", "b.wav", "c.wav", "d.wav"]))
    rows = [
        Row(manifest.songs[0], DONE, 3600.0, seconds=100.0, node="10.0.0.1", run=2),
        Row(manifest.songs[1], DONE, 1800.0, seconds=60.0, node="10.0.0.2", run=2),
        Row(manifest.songs[2], DONE, 60.0, seconds=3.0, node="10.0.0.2", run=1),  # an earlier run's
        Row(manifest.songs[3], FAILED, error="d.wav is not an audio file.", run=2),
    ]
    summary = summarize(rows, manifest, run=2, wall_s=120.0)
    text = "\n".join(summary.lines())
    print(text)
    assert not summary.complete and summary.done == 3 and summary.run_songs == 2
    assert "4 song(s): 3 done (1.52 h of audio), 1 failed, 0 pending." in text
    assert [(n.node, n.songs, n.realtime) for n in summary.nodes] == [("10.0.0.1", 1, 30.0), ("10.0.0.2", 1, 15.0)]
    assert f"{manifest.songs[3]}: d.wav is not an audio file." in text


def test_an_interrupted_attempt_leaves_no_partial_and_its_committed_stems_are_replaced_not_older_files(tmp_path):
    pytest.importorskip("ray")
    from stemsep.batch.worker import clear_attempt

    folder = tmp_path / "song"
    folder.mkdir()
    older, newer = folder / "vocals.wav", folder / "accompaniment.wav"
    older.write_bytes(b"the user's file")
    os.utime(older, (time.time() - 3600, time.time() - 3600))
    started = time.time()
    newer.write_bytes(b"committed by the interrupted attempt")
    partial = folder / ".vocals.wav.k2j4h1.partial"
    partial.write_bytes(b"half")
    clear_attempt([older, newer], started)
    assert sorted(p.name for p in folder.iterdir()) == ["vocals.wav"]


def test_without_ray_the_command_says_how_to_install_it(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from stemsep.cli import app

    for name in [m for m in sys.modules if m == "ray" or m.startswith(("ray.", "stemsep.batch.runner", "stemsep.batch.worker"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)
    result = CliRunner().invoke(app, ["batch", str(tmp_path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "stemsep batch needs Ray: pip install 'stemsep[batch]'." in result.output


def _listed(folder: Path, names: list[str]) -> Path:
    (folder / "list.txt").write_text("\n".join(names) + "\n")
    return folder / "list.txt"


# -- a real two-node cluster ---------------------------------------------------------------------


class LocalCluster:
    """A Ray head and one worker node on loopback, one CPU each, each in a temporary folder of its own.

    Ray turns 127.0.0.1 into the machine's network address (its nodes must reach each other), so the
    nodes take 127.0.0.2 and 127.0.0.3: loopback too, and two node addresses to tell them apart.
    """

    HEAD, WORKER = "127.0.0.2", "127.0.0.3"  # worker node k: 127.0.0.(3+k)

    def __init__(self, workers: int = 1, pin_cores: bool = False) -> None:
        """``pin_cores``: each node's processes on a core of their own (taskset), for benchmarks."""
        self.root = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths are limited
        ports = iter(free_ports(4 + 2 * workers))
        self.port = next(ports)
        self.env = {
            **RAY_ENV,
            # A lost node is noticed in ~5 s instead of ~30 s (defaults: every 3 s, 5 misses).
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_timeout_ms": "2000",
            "RAY_health_check_failure_threshold": "4",
        }
        head = [
            "--head", "--node-ip-address", self.HEAD, "--port", str(self.port), "--num-cpus", "1",
            "--include-dashboard", "false", "--dashboard-port", str(next(ports)), "--ray-client-server-port", str(next(ports)),
            "--dashboard-agent-listen-port", str(next(ports)), "--temp-dir", str(self.root / "head"),
        ]  # fmt: skip
        self.nodes = [head]
        self.manager_ports = []  # each worker node's raylet, found by it
        for k in range(workers):
            self.manager_ports.append(next(ports))
            self.nodes.append([
                "--address", self.address, "--node-ip-address", f"127.0.0.{3 + k}", "--num-cpus", "1",
                "--node-manager-port", str(self.manager_ports[-1]), "--dashboard-agent-listen-port", str(next(ports)),
                "--temp-dir", str(self.root / f"worker{k}"),
            ])  # fmt: skip
        cores = os.cpu_count() or 1
        self.pins = [["taskset", "-c", str(n % cores)] if pin_cores else [] for n in range(len(self.nodes))]

    @property
    def address(self) -> str:
        return f"{self.HEAD}:{self.port}"

    def start(self) -> None:
        for pin, args in zip(self.pins, self.nodes):
            done = subprocess.run(
                [*pin, str(VENV_BIN / "ray"), "start", "--disable-usage-stats", "--object-store-memory", str(100 << 20), *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert done.returncode == 0, done.stderr[-3000:]

    def kill_worker_raylet(self) -> int:
        """SIGKILL the worker node's raylet: the node dies as a crashed machine's would."""
        (pid,) = [pid for pid, line in _processes().items() if f"--node_manager_port={self.manager_ports[0]}" in line]
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self) -> None:
        """`ray stop --force` for this cluster only: SIGKILL its processes (found by folder or port) and their children."""
        table = _processes(with_parents=True)
        marks = (str(self.root), f":{self.port} ", f":{self.port}\0")
        chosen = {pid for pid, (_, line) in table.items() if any(m in line + " " for m in marks) and pid != os.getpid()}
        chosen -= _ancestors(table)
        while more := {pid for pid, (parent, _) in table.items() if parent in chosen} - chosen:
            chosen |= more
        for pid in chosen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def _processes(with_parents: bool = False) -> dict:
    """pid -> command line (or (parent pid, command line)), read from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        found[int(entry.name)] = (parent, line) if with_parents else line
    return found


def _ancestors(table: dict) -> set[int]:
    mine, pid = set(), os.getpid()
    while pid in table and pid not in mine:
        mine.add(pid)
        pid = table[pid][0]
    return mine


@pytest.fixture(scope="module")
def cluster():
    if not sys.platform.startswith("linux"):
        pytest.skip("the cluster is found and stopped through /proc")
    pytest.importorskip("ray")
    local = LocalCluster()
    try:
        started = time.perf_counter()
        local.start()
        print(f"\ncluster up in {time.perf_counter() - started:.0f} s at {local.address}")
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> Path:
    """11 songs of 2-4 s (wav, flac, mp3; some in a subfolder) and a broken one."""
    root = tmp_path_factory.mktemp("catalogue")
    (root / "disc 2").mkdir()
    for i in range(GOOD_SONGS):
        suffix = (".wav", ".flac", ".mp3")[i % 3]
        folder = root / "disc 2" if i >= 8 else root
        write_audio(folder / f"song{i:02d}{suffix}", music_like(2.0 + 0.2 * i, seed=i), 44100)
    (root / "broken.mp3").write_bytes(b"ID3" + bytes(range(256)) * 8)
    return root


@pytest.fixture(scope="module")
def reference(catalogue, official_2stems, tmp_path_factory) -> Path:
    """`stemsep separate` of the same songs (it also prepares the ONNX model the workers load)."""
    out = tmp_path_factory.mktemp("reference")
    done = run_cli("separate", str(catalogue), "-r", "-o", str(out), "--model-dir", str(official_2stems.parent))
    assert done.returncode == 1 and "broken.mp3" in done.stderr  # the broken one fails there too
    return out


def batch(catalogue: Path, output: Path, cluster: LocalCluster, model_dir: Path, *extra: str, **kwargs):
    command = ["batch", str(catalogue), "-o", str(output), "--ray", cluster.address, "--model-dir", str(model_dir), *extra]
    return run_cli(*command, **kwargs)


def assert_same_stems(reference: Path, output: Path) -> None:
    written = sorted(p.relative_to(output) for p in output.rglob("*.wav"))
    assert written == sorted(p.relative_to(reference) for p in reference.rglob("*.wav"))
    assert len(written) == GOOD_SONGS * len(STEMS)
    for relative in written:
        ours, theirs = sf.read(output / relative, dtype="int16")[0], sf.read(reference / relative, dtype="int16")[0]
        np.testing.assert_array_equal(ours, theirs, err_msg=str(relative))
    assert not [p for p in output.rglob("*") if p.name.endswith(".partial")]


@pytest.mark.slow
def test_a_two_node_cluster_writes_the_stems_separate_writes_and_reports_the_broken_file(
    cluster, catalogue, reference, official_2stems, tmp_path
):
    output = tmp_path / "out"
    started = time.perf_counter()
    done = batch(catalogue, output, cluster, official_2stems.parent)
    print(f"batch in {time.perf_counter() - started:.0f} s\n{done.stdout}{done.stderr[-2000:]}")
    assert done.returncode == 1, done.stderr[-3000:]  # one song failed
    assert_same_stems(reference, output)
    rows = table_rows(output)
    assert sum(state == DONE for state, *_ in rows.values()) == GOOD_SONGS
    state, _, error, _, _ = rows["broken.mp3"]
    assert state == FAILED and error.startswith(str(catalogue / "broken.mp3")) and error.endswith(".")
    assert f"\n  {error}\n" in done.stdout  # the summary's failures, each with its sentence
    assert f"12 song(s): {GOOD_SONGS} done" in done.stdout and "1 failed" in done.stdout
    assert {node for _, node, *_ in rows.values() if node} == {cluster.HEAD, cluster.WORKER}  # both nodes worked
    assert cluster.HEAD in done.stdout and cluster.WORKER in done.stdout  # throughput per node

    # A re-run finds everything answered: nothing separated again, no Ray needed; the failure stays reported.
    again = batch(catalogue, output, cluster, official_2stems.parent)
    assert again.returncode == 1 and "This run: 0 separated" in again.stdout and "broken.mp3" in again.stdout
    assert table_rows(output) == rows

    # --retry-failed tries the broken song again (and only it): it fails again, with the same sentence.
    retried = batch(catalogue, output, cluster, official_2stems.parent, "--retry-failed")
    assert retried.returncode == 1 and "This run: 0 separated" in retried.stdout
    after = table_rows(output)
    assert after["broken.mp3"][2] == error and after["broken.mp3"][4] == 3  # the first run, the re-run, this one
    assert {name: row for name, row in after.items() if name != "broken.mp3"} == {
        name: row for name, row in rows.items() if name != "broken.mp3"
    }


@pytest.mark.slow
def test_a_song_past_timeout_s_fails_with_its_sentence_and_leaves_no_stem(cluster, catalogue, official_2stems, tmp_path):
    songs = _listed(tmp_path, [str(catalogue / "song00.wav"), str(catalogue / "song01.flac")])
    done = batch(songs, tmp_path / "out", cluster, official_2stems.parent, "--timeout-s", "0.05")
    assert done.returncode == 1
    for name in ("song00.wav", "song01.flac"):
        assert f"{catalogue / name} took longer than --timeout-s 0.05 s." in done.stdout
    assert not [p for p in (tmp_path / "out").rglob("*") if p.suffix in (".wav", ".partial")]


@pytest.mark.slow
def test_without_ray_a_local_ray_instance_separates_a_csv_manifest(catalogue, reference, official_2stems, tmp_path):
    pytest.importorskip("ray")
    names = ["song00.wav", "song01.flac"]
    (tmp_path / "songs.csv").write_text("title,path\n" + "".join(f"{n},{catalogue / n}\n" for n in names))
    started = time.perf_counter()
    done = run_cli("batch", str(tmp_path / "songs.csv"), "-o", str(tmp_path / "out"), "--workers", "1",
                   "--model-dir", str(official_2stems.parent))  # fmt: skip
    print(f"local instance: {time.perf_counter() - started:.0f} s\n{done.stdout}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 song(s): 2 done" in done.stdout
    for name in names:
        for stem in STEMS:
            relative = Path(Path(name).stem) / f"{stem}.wav"
            ours = sf.read(tmp_path / "out" / relative, dtype="int16")[0]
            np.testing.assert_array_equal(ours, sf.read(reference / relative, dtype="int16")[0])


@pytest.mark.slow
def test_outputs_two_songs_would_share_are_refused_before_any_work(cluster, catalogue, reference, official_2stems, tmp_path):
    done = batch(catalogue, tmp_path / "out", cluster, official_2stems.parent, "-f", "{instrument}.{codec}")
    assert done.returncode == 1
    assert "would both write" in done.stderr and "add {foldername} to the filename format" in done.stderr
    assert not list((tmp_path / "out").rglob("*.wav"))


@pytest.mark.slow
def test_a_worker_node_killed_mid_run_loses_nothing_and_leaves_nothing_partial(
    cluster, catalogue, reference, official_2stems, tmp_path
):
    output = tmp_path / "out"
    started = time.perf_counter()
    command = [sys.executable, "-m", "stemsep.cli", "batch", str(catalogue), "-o", str(output), "--ray", cluster.address]
    command += ["--model-dir", str(official_2stems.parent)]
    process = subprocess.Popen(command, cwd=REPO, env=RAY_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        killed_at = None
        while process.poll() is None and killed_at is None:
            time.sleep(0.1)
            try:
                rows = table_rows(output) if (output / TABLE_NAME).exists() else {}
            except sqlite3.OperationalError:  # the driver is writing
                continue
            by_worker = [r for r in rows.values() if r[0] == DONE and r[1] == cluster.WORKER]
            pending = [r for r in rows.values() if r[0] in (PENDING, RUNNING)]
            if by_worker and len(pending) >= 3:  # the worker node is busy with its next song
                cluster.kill_worker_raylet()
                killed_at = time.perf_counter() - started
        out, err = process.communicate(timeout=150)
    finally:
        process.kill()
    print(f"raylet killed at {killed_at:.1f} s, batch done in {time.perf_counter() - started:.0f} s\n{out}{err[-3000:]}")
    assert killed_at is not None, "the run ended before the worker node had separated a song"
    assert process.returncode == 1  # the broken song
    assert_same_stems(reference, output)  # nothing missing, nothing partial, every stem exact
    rows = table_rows(output)
    assert sum(state == DONE for state, *_ in rows.values()) == GOOD_SONGS
    redone = [name for name, (state, node, _, attempts, _) in rows.items() if attempts > 1]
    assert redone and all(rows[name][1] == cluster.HEAD for name in redone)  # redone on the surviving node
    assert "died" in err and "separating it again" in err
