"""`stemsep dataset synth|prepare`: layouts, checks, CSVs, re-runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from stemsep.data.prepare import prepare
from stemsep.data.stem_mp4 import write_stem_mp4
from stemsep.data.synth import SOURCES, synth_track, write_synthetic_dataset
from stemsep.data.tracks import MUSDB_STREAMS


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_synthetic_stems_are_seeded_distinct_and_sum_to_the_mixture():
    a, b = synth_track(5, 3.0), synth_track(5, 3.0)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    np.testing.assert_allclose(a["mixture"], np.sum([a[s] for s in SOURCES], axis=0), atol=1e-6)
    assert not np.allclose(synth_track(6, 3.0)["vocals"], a["vocals"])

    # Distinguishable by spectrum: bass lives low, the voice and pads above it, drums everywhere.
    def centroid(x):
        spectrum = np.abs(np.fft.rfft(x[:, 0])) ** 2  # power-weighted
        return float(np.sum(np.fft.rfftfreq(x.shape[0], 1 / 44100) * spectrum) / np.sum(spectrum))

    centroids = {s: centroid(a[s]) for s in SOURCES}
    print("spectral centroids (Hz):", {k: round(v) for k, v in centroids.items()})
    assert centroids["bass"] < 200 < centroids["vocals"] and centroids["drums"] > centroids["other"]


def test_prepare_decodes_stem_mp4_writes_csvs_and_skips_done_tracks(tmp_path):
    root = tmp_path / "musdb"
    write_synthetic_dataset(root, train=7, test=2, validation=1, seconds=3.0, seed=2, layout="stem")
    out = tmp_path / "prepared"
    result = prepare(root, out, small=2, workers=2)
    assert not result.failed and len(result.prepared) == 9
    assert {p.name for p in result.csvs} == {
        "train.csv", "validation.csv", "test.csv", "train_small.csv", "validation_small.csv", "test_small.csv"
    }  # fmt: skip
    train, validation, test = rows(out / "train.csv"), rows(out / "validation.csv"), rows(out / "test.csv")
    assert (len(train), len(validation), len(test)) == (6, 1, 2)  # no official MUSDB name: every 7th held out
    assert list(train[0]) == ["mix_path", "vocals_path", "drums_path", "bass_path", "other_path", "duration"]
    assert len(rows(out / "train_small.csv")) == 2
    first = train[0]
    assert abs(float(first["duration"]) - 3.0) < 0.05
    original = synth_track(2 * 1000 + 0, 3.0)
    decoded, rate = sf.read(out / first["bass_path"], dtype="float32")
    assert rate == 44100 and decoded.shape[1] == 2
    n = original["bass"].shape[0]
    snr = 10 * np.log10(np.sum(original["bass"] ** 2) / np.sum((decoded[:n] - original["bass"]) ** 2))
    assert snr > 15, f"bass decoded at {snr:.1f} dB"  # stream 2 is bass, AAC at 256 kb/s

    again = prepare(root, out, workers=2)
    assert len(again.skipped) == 9 and not again.failed


def test_prepare_reports_truncated_and_mislabeled_tracks_and_writes_nothing_for_them(tmp_path):
    root = tmp_path / "musdb"
    write_synthetic_dataset(root, train=2, test=1, validation=1, seconds=3.0, seed=3, layout="stem")
    good = sorted((root / "train").glob("*.stem.mp4"))
    cut = root / "train" / "Cut - Track.stem.mp4"
    cut.write_bytes(good[0].read_bytes()[: good[0].stat().st_size // 2])
    stems = synth_track(9, 3.0)
    swapped = [stems["vocals"] if name == "mixture" else stems[name] for name in MUSDB_STREAMS]  # vocals sold as the mix
    write_stem_mp4(root / "train" / "Swapped - Track.stem.mp4", swapped, 44100)
    (root / "test" / "Not - Audio.stem.mp4").write_bytes(b"this is not an mp4")

    out = tmp_path / "prepared"
    result = prepare(root, out, workers=2)
    print(result.failed)
    assert set(result.failed) == {"train/Cut - Track", "train/Swapped - Track", "test/Not - Audio"}
    assert any(w in result.failed["train/Cut - Track"] for w in ("truncated", "damaged", "not an audio file"))
    assert "do not add up to the mixture" in result.failed["train/Swapped - Track"]
    assert "not an audio file" in result.failed["test/Not - Audio"]
    assert len(result.prepared) == 3
    for name in ("Cut - Track", "Swapped - Track"):
        assert not (out / "train" / name).exists()
    listed = {r["mix_path"] for r in rows(out / "train.csv") + rows(out / "validation.csv") + rows(out / "test.csv")}
    assert len(listed) == 3 and not any("Cut" in p or "Swapped" in p for p in listed)


def test_prepare_takes_musdb18_hq_folders_as_they_are(tmp_path):
    root = tmp_path / "hq"
    write_synthetic_dataset(root, train=2, test=1, validation=1, seconds=2.0, seed=4, layout="wav")
    result = prepare(root, tmp_path / "csvs", workers=1)
    assert not result.failed
    [row] = rows(tmp_path / "csvs" / "test.csv")
    assert (tmp_path / "csvs" / row["mix_path"]).resolve() == (root / "test" / "Synth - Test 000" / "mixture.wav").resolve()
    assert not (tmp_path / "csvs" / "test").exists()  # nothing re-encoded


def test_cli_synth_then_prepare_reports_a_broken_track_with_exit_status_1(tmp_path):
    from typer.testing import CliRunner

    from stemsep.cli import app

    runner = CliRunner()
    made = runner.invoke(app, ["dataset", "synth", "-o", str(tmp_path / "s"), "--train", "2", "--validation", "1",
                               "--test", "1", "--seconds", "2", "--layout", "stem"])  # fmt: skip
    assert made.exit_code == 0, made.output
    (tmp_path / "s" / "test" / "Broken - Track.stem.mp4").write_bytes(b"\0" * 1000)
    prepared = runner.invoke(app, ["dataset", "prepare", str(tmp_path / "s"), "-o", str(tmp_path / "p"), "--workers", "1"])
    assert prepared.exit_code == 1
    assert "3 track(s) ready" in prepared.output and "test/Broken - Track: " in prepared.output
    assert "Traceback" not in prepared.output
    wav = runner.invoke(app, ["dataset", "synth", "-o", str(tmp_path / "w"), "--train", "2", "--validation", "1",
                              "--test", "1", "--seconds", "2"])  # fmt: skip
    assert wav.exit_code == 0 and "stemsep train -p" in wav.output
    assert json.loads((tmp_path / "w" / "synth_4stems.json").read_text())["instrument_list"] == list(SOURCES)
