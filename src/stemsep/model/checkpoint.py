"""Import of the official TF1 checkpoints into the Keras U-Net.

The reference builds its graph with unscoped Keras layers, so TF1 numbers the
variables in build order across instruments: instrument ``i`` owns
``conv2d_{7i..7i+6}``, ``conv2d_transpose_{6i..6i+5}`` and
``batch_normalization_{12i..12i+11}``. The variables are read with
``tf.train.load_checkpoint``; no TF1 graph is built.

``read_bundle`` reads the same files without TensorFlow (the JAX engine and
trainer run where TensorFlow is not installed): a checkpoint is a tensor
bundle, an index in LevelDB's table format (sorted keys in uncompressed
blocks, a footer pointing at the block index) whose values are
``BundleEntryProto`` messages (dtype, shape, shard, offset, size) locating
each tensor's raw little-endian bytes in ``<prefix>.data-*``. Sizes are
checked; CRCs are not (no CRC-32C in Python's standard library). The 2stems
checkpoint (78 MB) reads in ~0.1 s.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from stemsep.errors import StemsepError

N_CONV, N_DECONV, N_BN = 7, 6, 12
# batch_normalization_{12i+5} (the 6th encoder block's) feeds nothing in the
# reference graph, so the Keras model has no layer for it.
UNUSED_BN = 5
BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def _tf1_name(base: str, index: int) -> str:
    return base if index == 0 else f"{base}_{index}"


def variable_map(instruments: tuple[str, ...]) -> dict[str, list[str]]:
    """Keras layer name -> checkpoint variable names, in the layer's weight order."""
    mapping: dict[str, list[str]] = {}
    for i, scope in enumerate(instruments):
        for k in range(N_CONV):
            name = _tf1_name("conv2d", N_CONV * i + k)
            mapping[f"{scope}_conv{k + 1}"] = [f"{name}/kernel", f"{name}/bias"]
        for k in range(N_DECONV):
            name = _tf1_name("conv2d_transpose", N_DECONV * i + k)
            mapping[f"{scope}_deconv{k + 1}"] = [f"{name}/kernel", f"{name}/bias"]
        for k in range(N_BN):
            if k == UNUSED_BN:
                continue
            name = _tf1_name("batch_normalization", N_BN * i + k)
            mapping[f"{scope}_bn{k + 1}"] = [f"{name}/{v}" for v in BN_VARIABLES]
    return mapping


def checkpoint_prefix(model_dir: Path) -> Path:
    """The checkpoint prefix in a Spleeter model folder (``model`` by default)."""
    index_files = sorted(model_dir.glob("*.index"))
    if not index_files:
        raise StemsepError(f"No TensorFlow checkpoint (*.index) in {model_dir}.")
    state = model_dir / "checkpoint"
    if state.is_file():
        for line in state.read_text(errors="replace").splitlines():
            if line.startswith("model_checkpoint_path:"):
                candidate = model_dir / line.split(":", 1)[1].strip().strip('"')
                if candidate.with_suffix(candidate.suffix + ".index").is_file():
                    return candidate
    return index_files[-1].with_suffix("")


def read_checkpoint(prefix: Path) -> dict[str, np.ndarray]:
    """All variables of a TF checkpoint as numpy arrays."""
    from stemsep._tf import import_tensorflow

    tf = import_tensorflow()

    try:
        reader = tf.train.load_checkpoint(str(prefix))
        return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StemsepError(f"Checkpoint {prefix} is corrupt or unreadable ({first_line[:160]}).") from None


# TensorFlow's DataType enum -> numpy; DT_STRING (7: the object graph of TF2 checkpoints) is skipped.
_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?"}
_DTYPES |= {17: "<u2", 19: "<f2", 22: "<u4", 23: "<u8"}
_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_BYTES = 48


def read_bundle(prefix: Path) -> dict[str, np.ndarray]:
    """Every numeric variable of the TF checkpoint at ``prefix``, without TensorFlow."""
    try:
        index = Path(f"{prefix}.index").read_bytes()
        entries = dict(_table_entries(index))
        shards = _proto_fields(entries.pop(b"", b"")).get(1, [1])[0]
        data = {}
        for shard in range(shards):
            path = Path(f"{prefix}.data-{shard:05d}-of-{shards:05d}")
            data[shard] = path.read_bytes()
        variables = {}
        for key, value in entries.items():
            tensor = _bundle_tensor(value, data)
            if tensor is not None:
                variables[key.decode()] = tensor
        return variables
    except (OSError, ValueError, KeyError, IndexError, struct.error) as error:
        raise StemsepError(f"Checkpoint {prefix} is corrupt or unreadable ({type(error).__name__}: {error}).") from None


def _bundle_tensor(entry: bytes, data: dict[int, bytes]) -> np.ndarray | None:
    """The array a ``BundleEntryProto`` points at (None for strings)."""
    fields = _proto_fields(entry)
    dtype = _DTYPES.get(fields.get(1, [1])[0])
    if dtype is None:
        return None
    if 7 in fields:
        raise ValueError("partitioned variables are not supported")
    shape = tuple(_proto_fields(dim).get(1, [0])[0] for dim in _proto_fields(fields.get(2, [b""])[0]).get(2, []))
    shard, offset, size = fields.get(3, [0])[0], fields.get(4, [0])[0], fields.get(5, [0])[0]
    count = int(np.prod(shape, dtype=np.int64))
    if size != count * np.dtype(dtype).itemsize or offset + size > len(data[shard]):
        raise ValueError(f"tensor of {size} bytes does not fit its shape {shape} or its data file")
    native = np.dtype(dtype).newbyteorder("=")
    return np.frombuffer(data[shard], dtype, count, offset).reshape(shape).astype(native)


def _table_entries(table: bytes):
    """(key, value) pairs of a LevelDB table held in ``table``."""
    footer = table[-_FOOTER_BYTES:]
    if len(footer) < _FOOTER_BYTES or struct.unpack("<Q", footer[-8:])[0] != _TABLE_MAGIC:
        raise ValueError("not a tensor bundle index")
    _, position = _varint(footer, _varint(footer, 0)[1])  # skip the metaindex handle
    index_offset, position = _varint(footer, position)
    index_size, _ = _varint(footer, position)
    for _, handle in _block_entries(table, index_offset, index_size):
        offset, position = _varint(handle, 0)
        yield from _block_entries(table, offset, _varint(handle, position)[0])


def _block_entries(table: bytes, offset: int, size: int):
    """A block's entries: keys share a prefix with the previous key; a restart array ends the block."""
    if table[offset + size] != 0:
        raise ValueError("compressed index blocks are not supported")
    block = table[offset : offset + size]
    restarts = struct.unpack("<I", block[-4:])[0]
    end, position, key = len(block) - 4 * (restarts + 1), 0, b""
    while position < end:
        shared, position = _varint(block, position)
        fresh, position = _varint(block, position)
        length, position = _varint(block, position)
        key = key[:shared] + block[position : position + fresh]
        position += fresh
        yield key, block[position : position + length]
        position += length


def _varint(buffer: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buffer[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if byte < 0x80:
            return value, position
        shift += 7


def _proto_fields(message: bytes) -> dict[int, list]:
    """Field number -> values of a protobuf message (varints as ints, length-delimited as bytes)."""
    fields: dict[int, list] = {}
    position = 0
    while position < len(message):
        tag, position = _varint(message, position)
        kind = tag & 7
        if kind == 0:
            value, position = _varint(message, position)
        elif kind == 2:
            length, position = _varint(message, position)
            value, position = message[position : position + length], position + length
        elif kind in (1, 5):
            width = 8 if kind == 1 else 4
            value, position = message[position : position + width], position + width
        else:
            raise ValueError(f"unexpected protobuf wire type {kind}")
        fields.setdefault(tag >> 3, []).append(value)
    return fields


def assign_checkpoint(model, variables: dict[str, np.ndarray], instruments: tuple[str, ...], source: str) -> None:
    """Set every U-Net weight from the checkpoint; any missing or misshaped variable is an error."""
    for layer_name, names in variable_map(instruments).items():
        layer = model.get_layer(layer_name)
        missing = [n for n in names if n not in variables]
        if missing:
            raise StemsepError(f"Checkpoint {source} does not fit this model: variable {missing[0]} is missing.")
        values = [variables[n] for n in names]
        for weight, value, name in zip(layer.weights, values, names):
            if tuple(weight.shape) != value.shape:
                expected = tuple(weight.shape)
                problem = f"{name} has shape {value.shape}, expected {expected}"
                raise StemsepError(f"Checkpoint {source} does not fit this model: {problem}.")
        layer.set_weights(values)
