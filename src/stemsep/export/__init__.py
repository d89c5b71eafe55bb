"""Export to TFLite (LiteRT), ONNX and SavedModel, for phones and edge devices."""
