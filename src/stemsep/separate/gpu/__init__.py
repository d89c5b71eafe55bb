"""Separation on a GPU through Keras 3's JAX backend (``--device gpu``, ``--backend jax``).

``device``: which engine a run gets and how Keras is switched to JAX;
``unets``: the U-Nets as one jitted function of their weights (no TensorFlow);
``spectral``: STFT, ratio masks or Wiener filter, inverse STFT in jnp;
``engine``: the engine that runs both on the device, with segments of every
file in flight batched together; ``files``: several files separated at once.

Nothing here imports TensorFlow, and Keras is imported only once the JAX
backend is set (``device.use_jax``).
"""
