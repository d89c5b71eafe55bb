"""NI stem files: five streams written in blocks come back with the input length, ALAC bit-exact at 24 bits,
the mixture first and the only enabled track, the manifest at moov/udta/stem, written atomically; and the
2/4/5stems models fill NI's four slots (any other model is refused in one sentence)."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import av
import numpy as np
import pytest

from stemsep.audio.ni_stems import (
    NI_COLORS,
    NI_SLOTS,
    NIStemWriter,
    insert_stem_box,
    iter_boxes,
    ni_slot_stems,
    read_ni_stems,
)
from stemsep.errors import StemsepError
from stemsep.files import current_umask
from tests.helpers import snr_db, write_audio

RATE = 44100
N = 3 * RATE + 77  # not a multiple of either codec's frame (AAC 1024, ALAC 4096)
BLOCKS = (1, 1000, 4096, 20000, 777)  # then the rest in one block
NAMES = ("Drums", "Bass", "Other + Piano", "Vocals ♪")
COLORS = ("#112233", "#445566", "#778899", "#AABBCC")
# The keys of NI's Stem Creator manifest (also what Mixxx and stemgen write).
COMPRESSOR_KEYS = {"enabled", "input_gain", "output_gain", "threshold", "ratio", "attack", "release", "hp_cutoff", "dry_wet"}
LIMITER_KEYS = {"enabled", "threshold", "ceiling", "release"}


def _signals() -> list[np.ndarray]:
    """Mixture and four stems: a different sine per stream (and per channel), one stem clipping past ±1."""
    t = np.arange(N) / RATE
    waves = [
        np.stack([0.4 * np.sin(2 * np.pi * f * t), 0.3 * np.sin(2 * np.pi * 1.5 * f * t)], axis=1)
        for f in (220, 330, 495, 660, 880)
    ]
    waves[3][:10] = [[1.5, -1.5]] * 10
    return [w.astype(np.float32) for w in waves]


def _write(path: Path, codec: str, signals: list[np.ndarray]) -> None:
    writer = NIStemWriter(path, RATE, NAMES, codec=codec, colors=COLORS)
    start = 0
    for size in (*BLOCKS, N):
        stop = min(start + size, N)
        writer.write(signals[0][start:stop], [s[start:stop] for s in signals[1:]])
        start = stop
    writer.commit(overwrite=False)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    """The same five signals written once with each codec."""
    paths = {codec: tmp_path_factory.mktemp(codec) / "song.stem.mp4" for codec in ("aac", "alac")}
    for codec, path in paths.items():
        _write(path, codec, _signals())
    return paths


def _decode(path: Path) -> list[np.ndarray]:
    """Every audio stream decoded by FFmpeg, [n, 2] in the decoder's sample format."""
    with av.open(str(path)) as container:
        count = len(container.streams.audio)
    streams = []
    for index in range(count):  # one pass per stream: a container is decoded once
        with av.open(str(path)) as container:
            streams.append(np.concatenate([f.to_ndarray() for f in container.decode(audio=index)], axis=1).T)
    return streams


def _walk(data: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    """A minimal box walker of our own: kind -> (payload start, end) for the first box of each kind."""
    found: dict[bytes, tuple[int, int]] = {}
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        header = 16 if size == 1 else 8
        size = struct.unpack(">Q", data[start + 8 : start + 16])[0] if size == 1 else (size or end - start)
        found.setdefault(kind, (start + header, start + size))
        start += size
    return found


def _tracks(data: bytes) -> list[int]:
    """The tkhd flags of every trak in moov, in file order."""
    moov = _walk(data, 0, len(data))[b"moov"]
    flags, pos = [], moov[0]
    while pos < moov[1]:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"trak":
            tkhd = _walk(data, pos + 8, pos + size)[b"tkhd"]
            flags.append(int.from_bytes(data[tkhd[0] + 1 : tkhd[0] + 4], "big"))
        pos += size
    return flags


@pytest.mark.parametrize("codec", ["aac", "alac"])
def test_the_file_has_five_stereo_streams_of_the_input_length(written, codec):
    info = read_ni_stems(written[codec])
    assert len(info.streams) == 5
    for stream in info.streams:
        # Exact: the length comes from packet timestamps, where the muxer's edit list has removed AAC's
        # 1024 priming samples and the last packet's duration excludes the padding of its frame.
        assert (stream.codec, stream.sample_rate, stream.channels, stream.samples) == (codec, RATE, 2, N)
    assert [s.enabled for s in info.streams] == [True, False, False, False, False]


@pytest.mark.parametrize("codec", ["aac", "alac"])
def test_each_decoded_stream_is_its_own_input_with_the_mixture_first(written, codec):
    decoded = _decode(written[codec])
    for out, ref in zip(decoded, _signals(), strict=True):
        # FFmpeg skips the 1024 AAC priming samples (edit list) but keeps the padding of the last frame, so a
        # decoded AAC stream is up to 1023 samples longer than the input; ALAC decodes to exactly the input.
        assert N <= out.shape[0] < N + (1024 if codec == "aac" else 1)
        estimate = out[:N].astype(np.float64) / (2**31 if codec == "alac" else 1)
        assert snr_db(np.clip(ref, -1, 1)[100:], estimate[100:]) > (20 if codec == "aac" else 100)


def test_alac_holds_the_24_bit_quantized_input_bit_exactly(written):
    for out, ref in zip(_decode(written["alac"]), _signals(), strict=True):
        levels = np.clip(np.round(ref.astype(np.float64) * 2**23), -(2**23), 2**23 - 1).astype(np.int32)
        np.testing.assert_array_equal(out >> 8, levels)
        np.testing.assert_array_equal(out & 0xFF, 0)


@pytest.mark.parametrize("codec", ["aac", "alac"])
def test_the_manifest_is_the_json_written_in_moov_udta_stem(written, codec):
    path = written[codec]
    data = path.read_bytes()
    top = _walk(data, 0, len(data))
    assert list(top)[-1] == b"moov" and top[b"mdat"][1] <= top[b"moov"][0]
    udta = _walk(data, *top[b"moov"])[b"udta"]
    stem = _walk(data, *udta)[b"stem"]
    manifest = json.loads(data[stem[0] : stem[1]].decode("utf-8"))
    assert manifest == read_ni_stems(path).manifest
    assert manifest["version"] == 1
    assert manifest["stems"] == [{"name": n, "color": c} for n, c in zip(NAMES, COLORS)]
    dsp = manifest["mastering_dsp"]
    assert set(dsp["compressor"]) == COMPRESSOR_KEYS and set(dsp["limiter"]) == LIMITER_KEYS
    assert not dsp["compressor"]["enabled"] and not dsp["limiter"]["enabled"]


@pytest.mark.parametrize("codec", ["aac", "alac"])
def test_only_the_mixture_track_is_enabled_in_tkhd(written, codec):
    flags = _tracks(written[codec].read_bytes())
    assert [f & 1 for f in flags] == [1, 0, 0, 0, 0]  # bit 0: track enabled
    assert all(f & 2 for f in flags)  # bit 1: track in movie


def test_no_temporary_file_is_left_after_commit_or_abort(tmp_path):
    signals = _signals()
    _write(tmp_path / "a.stem.mp4", "alac", signals)
    writer = NIStemWriter(tmp_path / "b.stem.mp4", RATE, NAMES, codec="aac")
    writer.write(signals[0][:5000], [s[:5000] for s in signals[1:]])
    writer.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.stem.mp4"]
    assert (tmp_path / "a.stem.mp4").stat().st_mode & 0o777 == 0o666 & ~current_umask()


def test_an_existing_file_is_replaced_only_with_overwrite(tmp_path):
    path = tmp_path / "song.stem.mp4"
    path.write_bytes(b"mine")
    signals = [s[:3000] for s in _signals()]
    writer = NIStemWriter(path, RATE, NAMES, codec="alac")
    writer.write(signals[0], signals[1:])
    with pytest.raises(StemsepError, match=r"already exists \(use --overwrite to replace it\)\.$"):
        writer.commit(overwrite=False)
    assert path.read_bytes() == b"mine" and os.listdir(tmp_path) == ["song.stem.mp4"]
    writer = NIStemWriter(path, RATE, NAMES, codec="alac")
    writer.write(signals[0], signals[1:])
    writer.commit(overwrite=True)
    assert read_ni_stems(path).streams[0].samples == 3000 and os.listdir(tmp_path) == ["song.stem.mp4"]


def test_the_walker_accepts_64_bit_sizes_and_a_last_box_running_to_the_end():
    ftyp = struct.pack(">I4s", 12, b"ftyp") + b"isom"
    mdat = struct.pack(">I4sQ", 1, b"mdat", 20) + b"abcd"  # 64-bit largesize
    moov = struct.pack(">I4s", 0, b"moov") + b"xyz"  # size 0: to the end of the file
    data = ftyp + mdat + moov
    found = [(b.kind, b.start, b.header, b.end) for b in iter_boxes(io.BytesIO(data), 0, len(data))]
    assert found == [(b"ftyp", 0, 8, 12), (b"mdat", 12, 16, 32), (b"moov", 32, 8, 43)]
    with pytest.raises(StemsepError, match="impossible size"):
        list(iter_boxes(io.BytesIO(data[:20]), 0, 20))


def test_a_stem_box_goes_into_a_new_udta_and_needs_moov_last(tmp_path):
    mvhd = struct.pack(">I4s", 12, b"mvhd") + b"\0" * 4
    path = tmp_path / "x.mp4"
    path.write_bytes(struct.pack(">I4s", 12, b"mdat") + b"data" + struct.pack(">I4s", 8 + len(mvhd), b"moov") + mvhd)
    insert_stem_box(path, b'{"version": 1}')
    data = path.read_bytes()
    moov = _walk(data, 0, len(data))[b"moov"]
    assert moov[1] == len(data) and data[moov[0] : moov[0] + 12] == mvhd
    stem = _walk(data, *_walk(data, *moov)[b"udta"])[b"stem"]
    assert data[stem[0] : stem[1]] == b'{"version": 1}'
    path.write_bytes(data + struct.pack(">I4s", 8, b"free"))
    with pytest.raises(RuntimeError, match="moov last"):
        insert_stem_box(path, b"{}")


def test_a_plain_m4a_has_no_manifest_and_a_non_mp4_is_refused(tmp_path):
    plain = write_audio(tmp_path / "plain.m4a", _signals()[0][:4096], RATE)
    info = read_ni_stems(plain)
    assert info.manifest is None and len(info.streams) == 1
    (tmp_path / "junk.mp4").write_bytes(b"not an mp4 at all")
    with pytest.raises(StemsepError, match=r"could not be read as an NI stem file"):
        read_ni_stems(tmp_path / "junk.mp4")


def test_names_colours_and_codec_are_checked_before_writing(tmp_path):
    with pytest.raises(StemsepError, match="exactly 4 non-empty stem names"):
        NIStemWriter(tmp_path / "a.stem.mp4", RATE, NAMES[:3])
    with pytest.raises(StemsepError, match="#RRGGBB"):
        NIStemWriter(tmp_path / "a.stem.mp4", RATE, NAMES, colors=("red", *NI_COLORS[1:]))
    with pytest.raises(StemsepError, match="aac or alac audio, not 'mp3'"):
        NIStemWriter(tmp_path / "a.stem.mp4", RATE, NAMES, codec="mp3")
    assert os.listdir(tmp_path) == []


def test_4stems_fill_the_slots_in_ni_order():
    slots = ni_slot_stems(["vocals", "drums", "bass", "other"])
    assert slots == [("Drums", ("drums",)), ("Bass", ("bass",)), ("Other", ("other",)), ("Vocals", ("vocals",))]
    assert [parts[0] for _, parts in slots] == list(NI_SLOTS)


def test_5stems_put_piano_with_other():
    slots = ni_slot_stems(["vocals", "piano", "drums", "bass", "other"])
    assert slots[2] == ("Other + Piano", ("other", "piano"))
    assert [s[1] for s in slots] == [("drums",), ("bass",), ("other", "piano"), ("vocals",)]


def test_2stems_put_accompaniment_first_and_vocals_last_with_silence_between():
    slots = ni_slot_stems(["vocals", "accompaniment"])
    assert slots == [("Accompaniment", ("accompaniment",)), ("Silent", ()), ("Silent", ()), ("Vocals", ("vocals",))]


def test_other_instrument_sets_are_refused_in_one_sentence():
    with pytest.raises(StemsepError) as error:
        ni_slot_stems(["vocals", "drums", "guitar"])
    message = str(error.value)
    assert "vocals, drums, guitar" in message and "2stems" in message and "5stems" in message
    assert message.endswith(".") and message.count(". ") == 0
    with pytest.raises(StemsepError):
        ni_slot_stems(["vocals", "vocals", "drums", "bass", "other"])
