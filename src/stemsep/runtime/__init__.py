"""Separation with exported models through LiteRT or ONNX Runtime: no TensorFlow import."""
