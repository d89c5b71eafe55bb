"""`stemsep evaluate`: museval scores with known answers, layouts, failures, reports, --compare."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemsep.data.stem_mp4 import write_stem_mp4
from stemsep.data.tracks import MUSDB_STREAMS, find_tracks
from stemsep.evaluate._museval import import_museval
from stemsep.evaluate.aggregate import load_run
from stemsep.evaluate.run import evaluate
from stemsep.evaluate.score import ScoreJob, score_track

RATE = 44100
STEMS = ("vocals", "drums", "bass", "other")


def synthetic_stems(seed: int, seconds: float = 4.0) -> dict[str, np.ndarray]:
    """Four distinguishable stereo sources: a gliding tone, noise bursts, a low tone, soft noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 300 + 40 * seed
    stereo = lambda x: np.stack([x, 0.8 * x], axis=1).astype(np.float32)  # noqa: E731
    return {
        "vocals": stereo(0.2 * np.sin(2 * np.pi * (f0 + 30 * np.sin(2 * np.pi * 0.7 * t)) * t)),
        "drums": (0.3 * rng.standard_normal((t.size, 2)) * (np.mod(t, 0.5) < 0.06)[:, None]).astype(np.float32),
        "bass": stereo(0.3 * np.sin(2 * np.pi * (50 + 5 * seed) * t)),
        "other": (0.05 * rng.standard_normal((t.size, 2))).astype(np.float32),
    }


def write_hq_track(folder: Path, stems: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True)
    for name, audio in stems.items():
        sf.write(folder / f"{name}.wav", audio, RATE, subtype="FLOAT")
    sf.write(folder / "mixture.wav", np.sum(list(stems.values()), axis=0), RATE, subtype="FLOAT")


class EchoSeparator:
    """Returns the mixture as every instrument's estimate (a separator with known scores)."""

    class config:  # noqa: N801
        sample_rate = RATE

    instruments = STEMS
    mwf = False

    def separate(self, waveform: np.ndarray, rate: int) -> dict[str, np.ndarray]:
        return {name: waveform.copy() for name in self.instruments}


def museval_quantized(values: np.ndarray) -> np.ndarray:
    # museval stores frame scores rounded to 1e-5 (TrackStore._q): compare like with like.
    return np.array([float(Decimal(float(v)).quantize(Decimal(".00001"))) for v in values])


def test_reference_stems_as_estimates_score_a_very_high_sdr():
    stems = synthetic_stems(0)
    # Identical signals score +inf, which museval records as NaN: add noise at the level of 16-bit rounding.
    noise = np.random.default_rng(1)
    estimates = {k: v + 3e-5 * noise.standard_normal(v.shape) for k, v in stems.items()}
    store = score_track(ScoreJob("t", "test", RATE, stems, estimates, None))
    sdr = {t["name"]: np.median([float(f["metrics"]["SDR"]) for f in t["frames"]]) for t in store.scores["targets"]}
    print("SDR of reference stems + 16-bit-level noise:", sdr)
    assert set(sdr) == set(STEMS)
    assert min(sdr.values()) > 60


def test_mixture_as_every_estimate_scores_what_museval_computes_directly(tmp_path):
    root = tmp_path / "data"
    tracks = {f"track{k}": synthetic_stems(k) for k in range(2)}
    for name, stems in tracks.items():
        write_hq_track(root / "test" / name, stems)
    result = evaluate("echo", root, tmp_path / "out", separator=EchoSeparator(), workers=2)
    assert sorted(result.scored) == sorted(tracks) and not result.failed

    museval = import_museval()
    per_track_medians = {name: {} for name in STEMS}
    for name, stems in tracks.items():
        references = np.stack([stems[s] for s in STEMS]).astype(np.float64)
        mixture = sf.read(root / "test" / name / "mixture.wav", dtype="float32")[0]  # what the pipeline decoded
        direct = dict(
            zip(("SDR", "ISR", "SIR", "SAR"), museval.evaluate(references, np.stack([mixture] * 4), win=RATE, hop=RATE))
        )
        written = json.loads((tmp_path / "out" / "test" / f"{name}.json").read_text())
        for target in written["targets"]:
            i = STEMS.index(target["name"])
            for metric, values in direct.items():
                ours = np.array([f["metrics"][metric] for f in target["frames"]], dtype=np.float64)
                np.testing.assert_allclose(ours, museval_quantized(values[i]), rtol=0, atol=1e-6)
            per_track_medians[target["name"]][name] = np.median(museval_quantized(direct["SDR"][i]))
    summary = load_run(tmp_path / "out").summary()
    for instrument in STEMS:
        expected = np.median(list(per_track_medians[instrument].values()))
        assert abs(summary.loc[instrument, "SDR"] - expected) < 1e-6
    csv = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert csv[0] == "instrument,SDR,SIR,ISR,SAR,tracks" and len(csv) == 1 + len(STEMS)


def test_failed_track_is_reported_and_the_rest_scored_then_skipped_on_rerun(tmp_path, separator_2stems):
    root = tmp_path / "data"
    for k in range(3):
        write_hq_track(root / "test" / f"track{k}", synthetic_stems(k, seconds=3.0))
    (root / "test" / "track1" / "mixture.wav").write_bytes(b"RIFF not really a wave file")
    lines: list[str] = []
    result = evaluate("spleeter:2stems", root, tmp_path / "out", separator=separator_2stems, workers=1, report=lines.append)
    assert sorted(result.scored) == ["track0", "track2"]
    assert list(result.failed) == ["track1"] and "not an audio file" in result.failed["track1"]
    assert any(line.startswith("track1: failed") for line in lines)
    for scores in result.scored.values():  # accompaniment = drums + bass + other, as musdb defines it
        assert set(scores) == {"vocals", "accompaniment"}
        assert all(np.isfinite(v) for v in scores.values())
    summary = load_run(tmp_path / "out").summary()
    assert list(summary.index) == ["vocals", "accompaniment"] and (summary["tracks"] == 2).all()

    again = evaluate("spleeter:2stems", root, tmp_path / "out", separator=separator_2stems, workers=1)
    assert sorted(again.skipped) == ["track0", "track2"] and list(again.failed) == ["track1"] and not again.scored


def test_musdb18_stem_mp4_and_csv_layouts_are_found(tmp_path):
    stems = synthetic_stems(3, seconds=2.0)
    mixture = np.sum(list(stems.values()), axis=0)
    (tmp_path / "musdb" / "test").mkdir(parents=True)
    sources = [mixture if name == "mixture" else stems[name] for name in MUSDB_STREAMS]
    write_stem_mp4(tmp_path / "musdb" / "test" / "Artist - Song.stem.mp4", sources, RATE)
    [track] = find_tracks(tmp_path / "musdb", "test")
    assert track.name == "Artist - Song" and set(track.stems) == {"drums", "bass", "other", "vocals"}
    decoded = track.reference("bass", RATE)[: stems["bass"].shape[0]]
    snr = 10 * np.log10(np.sum(stems["bass"] ** 2) / np.sum((decoded - stems["bass"]) ** 2))
    assert snr > 20, f"stream 2 (bass) decodes at {snr:.1f} dB SNR"  # right stream, aligned (no AAC priming shift)
    accompaniment = track.reference("accompaniment", RATE)
    assert accompaniment.shape == track.reference("vocals", RATE).shape

    write_hq_track(tmp_path / "prepared" / "train" / "song", stems)
    header = "mix_path,vocals_path,drums_path,bass_path,other_path,duration"
    row = ",".join(["train/song/mixture.wav", *(f"train/song/{s}.wav" for s in STEMS), "2.0"])
    (tmp_path / "prepared" / "validation.csv").write_text(f"{header}\n{row}\n")
    [listed] = find_tracks(tmp_path / "prepared", "validation")
    assert listed.name == "song" and listed.stems["drums"].path == tmp_path / "prepared" / "train" / "song" / "drums.wav"


def test_cli_errors_and_compare(tmp_path):
    from typer.testing import CliRunner

    from stemsep.cli import app

    runner = CliRunner()
    missing = runner.invoke(app, ["evaluate", "--mus_dir", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "is not a folder" in missing.output and "Traceback" not in missing.output
    empty = runner.invoke(app, ["evaluate", "--mus_dir", str(tmp_path)])
    assert empty.exit_code == 1 and "No tracks found for subset 'test'" in empty.output

    root = tmp_path / "data"
    write_hq_track(root / "test" / "a", synthetic_stems(0, 2.0))
    write_hq_track(root / "test" / "b", synthetic_stems(1, 2.0))
    evaluate("echo", root, tmp_path / "run1", separator=EchoSeparator(), workers=1)
    evaluate("echo", root, tmp_path / "run2", separator=EchoSeparator(), workers=1)
    compared = runner.invoke(
        app, ["evaluate", "--compare", str(tmp_path / "run1"), str(tmp_path / "run2"), "-o", str(tmp_path / "cmp")]
    )
    assert compared.exit_code == 0, compared.output
    assert "| instrument | echo (run1) | echo (run2) |" in compared.output
    png = tmp_path / "cmp" / "compare_sdr_boxplot.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    alone = runner.invoke(app, ["evaluate", "--compare", str(tmp_path / "run1")])
    assert alone.exit_code == 1 and "at least two" in alone.output


def test_boxplot_draws_one_box_per_instrument(tmp_path):
    from stemsep.evaluate.aggregate import boxplot

    root = tmp_path / "data"
    for k in range(3):
        write_hq_track(root / "test" / f"t{k}", synthetic_stems(k, 2.0))
    evaluate("echo", root, tmp_path / "out", separator=EchoSeparator(), workers=2)
    run = load_run(tmp_path / "out")
    assert boxplot([run], tmp_path / "plot.png") == [len(STEMS)]
    image = __import__("matplotlib.image", fromlist=["imread"]).imread(tmp_path / "plot.png")
    assert image.shape[0] > 300 and image.std() > 0.05  # drawn, not blank


@pytest.mark.slow
def test_keras_path_scored_against_the_reference_outputs_exceeds_50_db(
    tmp_path, example_mp3, example_wave, official_2stems, separator_2stems
):
    from tests.reference import harness

    reference = harness.separate("spleeter:2stems", example_mp3, model_path=official_2stems.parent)
    folder = tmp_path / "data" / "test" / "audio_example"
    folder.mkdir(parents=True)
    sf.write(folder / "mixture.wav", example_wave, RATE, subtype="FLOAT")
    for name, audio in reference.items():
        sf.write(folder / f"{name}.wav", audio, RATE, subtype="FLOAT")
    result = evaluate("spleeter:2stems", tmp_path / "data", tmp_path / "out", separator=separator_2stems, workers=1)
    print("museval SDR, stemsep vs spleeter 2.4.2 outputs as references:", result.scored)
    summary = load_run(tmp_path / "out").summary()
    assert (summary["SDR"] > 50).all(), summary


def test_a_failed_tracks_stale_file_stays_out_of_the_report_and_a_stem_of_another_length_fails_its_track(tmp_path):
    class VocalsAndAccompaniment(EchoSeparator):
        instruments = ("vocals", "accompaniment")

    root = tmp_path / "data"
    write_hq_track(root / "test" / "good", synthetic_stems(0, 1.0))
    write_hq_track(root / "test" / "cut", synthetic_stems(1, 1.0))
    bass = root / "test" / "cut" / "bass.wav"
    sf.write(bass, sf.read(bass, dtype="float32")[0][:22050], RATE, subtype="FLOAT")
    (tmp_path / "out" / "test").mkdir(parents=True)
    (tmp_path / "out" / "test" / "cut.json").write_text('{"targets": [')  # an interrupted earlier run
    result = evaluate("echo", root, tmp_path / "out", separator=VocalsAndAccompaniment(), workers=1)
    assert list(result.scored) == ["good"]
    reason = "Track cut: bass.wav lasts 0.50 s but mixture.wav lasts 1.00 s; every reference stem must be as long as the mixture."
    assert result.failed == {"cut": reason}
    assert load_run(tmp_path / "out", leave_out=["cut"]).tracks == 1
    assert "| vocals |" in (tmp_path / "out" / "results.md").read_text()
