"""Datasets: MUSDB18 layouts, reference CSVs, synthetic tracks, tf.data pipelines."""
