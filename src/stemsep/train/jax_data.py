"""The JAX trainer's input: ``dataset.StepSampler``'s batches made ahead in CPU threads, no TensorFlow.

The batch of step s depends only on (random_seed, s) (see ``train.dataset``),
so the batches of steps first..last-1 are made by a few threads in any order
and handed out in order, ``depth`` ahead of the step that trains, each
already copied to the device (``jax.device_put`` returns at once; the copy
overlaps the step before).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from stemsep.train.dataset import StepSampler

DEPTH = 4
THREADS = 4


def device_batches(sampler: StepSampler, first_step: int, last_step: int, depth: int = DEPTH) -> Iterator[tuple]:
    """(mix, sources) per step, on JAX's default device."""
    import jax

    def make(step: int) -> tuple:
        mix, *sources = sampler.batch(step)
        return jax.device_put((mix, tuple(sources)))

    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="stemsep-batches") as pool:
        ahead: deque = deque()
        steps = iter(range(first_step, last_step))
        for step in steps:
            ahead.append(pool.submit(make, step))
            if len(ahead) >= depth:
                break
        while ahead:
            batch = ahead.popleft().result()
            for step in steps:
                ahead.append(pool.submit(make, step))
                break
            yield batch
