"""Training: the reference's data pipeline and a TF2 loop under tf.distribute."""
