"""``WorkerPool``: the Ray actors of a batch, each holding one model, and which of them can take a song.

Actors are spread over the nodes (``SPREAD``), one per ``cpus_per_worker``
CPUs of the cluster. An actor whose worker or node dies is restarted by Ray
(``max_restarts=-1``), on its node or, when the node is gone, wherever there
is room; Ray does not retry the song it had (``max_task_retries=0``): the
driver redoes it itself, counting attempts, so a song that kills every worker
it touches fails with a sentence instead of looping. A restarted actor is
given songs again once it answers ``ready``.
"""

from __future__ import annotations

import time

import ray
from ray.exceptions import ActorDiedError, RayActorError

from stemsep.batch.worker import ModelChoice, RemoteWorker
from stemsep.errors import StemsepError

REST_S = 5.0  # between two ``ready`` calls to an actor Ray is still restarting


class WorkerPool:
    """Idle actors take songs; ``waiting`` holds the ``ready`` call of each actor (re)starting."""

    def __init__(self, model: ModelChoice, count: int, cpus_per_worker: float) -> None:
        options = {"num_cpus": cpus_per_worker, "max_restarts": -1, "max_task_retries": 0, "scheduling_strategy": "SPREAD"}
        self.actors = [RemoteWorker.options(**options).remote(model) for _ in range(count)]
        self.idle: list = []
        self.waiting: dict = {}
        self.nodes: dict = {}  # actor -> the node it last answered from
        self.resting: dict = {}  # actor -> when to ask it again (it was restarting)
        for actor in self.actors:
            self.recover(actor)
        self.notes: list[str] = []

    def recover(self, actor) -> None:
        """Wait for ``actor`` (new, or restarting after a death) to answer before it takes a song."""
        self.waiting[actor.ready.remote()] = actor

    def answered(self, ref) -> None:
        """An actor's ``ready`` returned: it becomes idle, or leaves the pool if its model did not load."""
        actor = self.waiting.pop(ref)
        try:
            node, problem = ray.get(ref)
        except ActorDiedError as error:  # dead for good: not restarted
            self.notes.append(f"A worker was lost for good ({type(error).__name__}).")
            self.actors.remove(actor)
            return
        except RayActorError:  # still restarting (its node is gone: it waits for room elsewhere)
            self.resting[actor] = time.monotonic() + REST_S
            return
        if problem is not None:
            self.actors.remove(actor)
            ray.kill(actor, no_restart=True)
            if not self.nodes:  # no worker has loaded it: the model itself is the problem
                raise StemsepError(problem)
            self.notes.append(f"A worker on {node} could not load the model: {problem}")
            return
        self.nodes[actor] = node
        self.idle.append(actor)

    def wake(self) -> None:
        """Ask the resting actors again whether they are back."""
        now = time.monotonic()
        for actor in [actor for actor, when in self.resting.items() if when <= now]:
            del self.resting[actor]
            self.recover(actor)

    @property
    def starting(self) -> bool:
        """Whether some actor may still come (back): it is loading, or Ray is restarting it."""
        return bool(self.waiting or self.resting)

    def first(self, wait_s: float):
        """The first actor to load its model (to plan the outputs with), left idle."""
        deadline = time.monotonic() + wait_s
        while not self.idle:
            self.wake()
            if not self.starting or time.monotonic() > deadline:
                raise StemsepError(
                    f"No worker started within {wait_s:.0f} s: the cluster has no free CPU for one, "
                    "or cannot start Python workers (see `ray status`)."
                )
            ready, _ = ray.wait(list(self.waiting), num_returns=1, timeout=1.0)
            for ref in ready:
                self.answered(ref)
        return self.idle[0]

    def kill(self, actor) -> None:
        """Stop a worker stuck on a song; Ray restarts it."""
        ray.kill(actor, no_restart=False)
