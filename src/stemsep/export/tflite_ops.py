"""List the operators of a .tflite file from its flatbuffer (ai-edge-litert has no analyzer)."""

from __future__ import annotations

from pathlib import Path


def operator_names(path: Path) -> set[str]:
    """Builtin op names, and ``CUSTOM:<name>`` for custom ops (Flex ops are ``CUSTOM:Flex...``)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
    names = {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}
    ops = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Codes above 127 live in BuiltinCode; older files use DeprecatedBuiltinCode.
        name = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ops.add(f"CUSTOM:{code.CustomCode().decode()}" if name == "CUSTOM" else name)
    return ops


def flex_ops(path: Path) -> set[str]:
    """Ops that would need the Flex (SELECT_TF_OPS) delegate: must be empty for mobile models."""
    return {op for op in operator_names(path) if op.startswith("CUSTOM:Flex") or op == "DELEGATE"}
