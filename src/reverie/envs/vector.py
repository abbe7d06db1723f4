"""A vector env whose workers survive faults (`env.parallel=async`).

Each env runs in its own worker process. A worker that raises, dies or does not answer
within `step_timeout` seconds (a reset: at least STARTUP_TIMEOUT) is killed and replaced by
a fresh one, and an env that returns NaN/inf observations or rewards is reset. Either way
the episode it was in ends as a truncation (the last good observation, reward 0,
truncated=True, an info flag naming the fault) and the next step returns the new
episode's first observation: Gymnasium's NEXT_STEP autoreset pattern, so the trainer's
episode bookkeeping needs no special case. Each fault is reported in that env's info:
`env_fault` ("<kind>: <message>") and `worker_restarts` (the total so far).

The workers are started with 'spawn', which imports the parent's main script again in each
worker. A script without the `if __name__ == "__main__":` guard would start training (and
workers) again there: such a worker exits quietly (REIMPORTED_MAIN_EXIT) and the parent
raises UnguardedMainError, one line naming the two fixes. A main that cannot be imported
again (a script piped to `python -`) is not asked for: the workers start without it, as
they do under `python -c` or in a notebook (a factory reaches them pickled by value).
'fork' would need no guard, but forking a process that runs torch's threads (and, at a
worker's restart mid-training, the learner's) can deadlock the child, so it is not used.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import (
    CloudpickleWrapper,
    batch_space,
    concatenate,
    create_empty_array,
    iterate,
)

from reverie.errors import ReverieError

# Faults in a row (no good step in between) before an env counts as broken for good:
# an env that fails every episode would otherwise be restarted forever.
MAX_FAULT_STREAK = 3
# Starting a worker (imports) and resetting an env (MineRL launches Minecraft) can take far
# longer than a step: they get at least this many seconds.
STARTUP_TIMEOUT = 300.0
# The exit code of a worker that found itself re-running a main script without the guard.
REIMPORTED_MAIN_EXIT = 87


class EnvWorkerError(ReverieError, RuntimeError):
    """An env kept failing, even in fresh worker processes."""


class UnguardedMainError(EnvWorkerError):
    """The workers re-ran the main script, whose training code is not under the guard."""


def _bootstrapping() -> bool:
    """Whether this process is a spawned child still importing its parent's main module
    (what multiprocessing itself checks before refusing to start a process there)."""
    return bool(getattr(mp.current_process(), "_inheriting", False))


def _unguarded_message() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = spec.name if spec is not None else getattr(main, "__file__", None)
    script = f"your script {name}" if name else "your script"
    return (
        f"env worker processes import {script} again, and its training code is not under "
        '`if __name__ == "__main__":`, so each worker started training again: put it under '
        "that guard, or pass env.parallel=sync to step the envs in this process"
    )


@contextlib.contextmanager
def _unimportable_main_left_out() -> Iterator[None]:
    """Leave the main script out of what a spawned worker imports when it cannot be
    imported again: a script read from stdin (`python -`) has the path '<stdin>', on which
    every worker would die. `python -c` and notebooks have no path, and work as is."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    where = getattr(mp.process, "ORIGINAL_DIR", None) or ""  # spawn's base for a relative path
    if os.path.isfile(os.path.join(where, path)):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


class WorkerFault(Exception):
    """A worker raised (`exception`), died (`died`) or did not answer in time (`timeout`)."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind, self.message = kind, message


def _describe(error: BaseException) -> str:
    """One line: the exception and where the env raised it."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def _worker(make: CloudpickleWrapper, conn: Connection) -> None:
    """Build one env, send its spaces, then answer ('reset', seed) and ('step', action)."""
    try:
        env = make()
        conn.send(("ok", (env.observation_space, env.action_space)))
        while True:
            command, data = conn.recv()
            if command == "reset":
                conn.send(("ok", env.reset(seed=data)))
            elif command == "step":
                conn.send(("ok", env.step(data)))
            else:  # close
                env.close()
                return
    except KeyboardInterrupt:
        return  # Ctrl-C reaches the whole process group: the parent decides what happens
    except Exception as e:
        try:  # the exception itself, so errors at startup (bad env id) reach the user as is
            conn.send(("error", (e, _describe(e))))
        except Exception:
            conn.send(("error", (None, _describe(e))))


class _Worker:
    """The parent's handle on one worker process and its pipe."""

    def __init__(self, ctx: Any, make: Callable[[], gym.Env]):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker, args=(CloudpickleWrapper(make), child), daemon=True
        )
        with _unimportable_main_left_out():
            self.process.start()
        child.close()  # the parent's end then sees EOF as soon as the worker dies
        self.broken = False

    def send(self, command: str, data: Any = None) -> None:
        try:
            self.conn.send((command, data))
        except OSError:  # a dead worker: reported by the next recv
            self.broken = True

    def recv(self, deadline: float | None, seconds: float) -> Any:
        """The worker's answer; WorkerFault if it raised, died or missed the deadline."""
        try:
            if self.broken:
                raise EOFError
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.conn.poll(timeout):
                raise WorkerFault("timeout", f"no answer within {seconds:g} s")
            status, payload = self.conn.recv()
        except WorkerFault:
            raise
        except (EOFError, OSError):
            self.process.join(1.0)  # for the exit code
            raise WorkerFault("died", f"worker exited (code {self.process.exitcode})") from None
        except Exception as e:  # e.g. an exception class that cannot be unpickled here
            raise WorkerFault("exception", f"unreadable answer: {_describe(e)}") from None
        if status == "error":
            error, message = payload
            raise WorkerFault("exception", message) from error
        return payload

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5.0)
        self.conn.close()

    def join(self, timeout: float = 5.0) -> None:
        """Wait for a worker told to close, then kill it if it has not exited."""
        self.process.join(timeout)
        self.kill()


class FaultTolerantVectorEnv(gym.vector.VectorEnv):
    """Envs in worker processes ('spawn'), stepped in parallel, with NEXT_STEP autoreset.

    Observations are batched per key as gymnasium's AsyncVectorEnv does (`concatenate` into
    arrays of shape (num_envs, ...)); infos carry `_key` masks.
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], step_timeout: float = 60.0):
        if _bootstrapping():
            # a worker re-running a main script that lacks the guard: no traceback here,
            # the parent reads this exit code and says what happened (UnguardedMainError)
            raise SystemExit(REIMPORTED_MAIN_EXIT)
        self.env_fns = list(env_fns)
        self.num_envs = len(self.env_fns)
        self.step_timeout = float(step_timeout)  # 0: wait forever
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}
        self.restarts = 0
        self._ctx = mp.get_context("spawn")
        self.workers = [_Worker(self._ctx, fn) for fn in self.env_fns]  # start in parallel
        try:
            spaces = [self._handshake(i) for i in range(self.num_envs)]
        except WorkerFault as fault:
            reran = any(w.process.exitcode == REIMPORTED_MAIN_EXIT for w in self.workers)
            self.close_extras()
            self.closed = True
            if reran:
                raise UnguardedMainError(_unguarded_message()) from None
            cause = fault.__cause__
            raise cause if cause is not None else EnvWorkerError(str(fault)) from None
        self.single_observation_space, self.single_action_space = spaces[0]
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        n = self.num_envs
        self._last_obs: list[Any] = [None] * n  # the last finite observation of each env
        self._needs_reset = np.zeros(n, bool)  # episode ended: reset on the next step
        self._seeds: list[int | None] = [None] * n
        self._pending_seed: list[int | None] = [None] * n  # for a restarted env's reset
        self._streak = np.zeros(n, np.int64)
        self._in_flight: dict[int, tuple[str, Any]] | None = None  # commands sent by step_async

    # ------------------------------------------------------------ plumbing
    def _handshake(self, i: int) -> tuple[gym.Space, gym.Space]:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        return self.workers[i].recv(deadline, STARTUP_TIMEOUT)

    def _timeout(self, command: str) -> float:
        if self.step_timeout <= 0:
            return 0.0  # wait forever
        return self.step_timeout if command == "step" else max(self.step_timeout, STARTUP_TIMEOUT)

    def _exchange(self, commands: dict[int, tuple[str, Any]]) -> dict[int, Any]:
        """Send every command first, then gather the answers: the workers run in parallel."""
        self._send(commands)
        return self._gather(commands)

    def _send(self, commands: dict[int, tuple[str, Any]]) -> None:
        for i, (command, data) in commands.items():
            self.workers[i].send(command, data)

    def _gather(self, commands: dict[int, tuple[str, Any]]) -> dict[int, Any]:
        """The answers to sent commands; a step's deadline counts from when we start waiting,
        since the caller may have been busy (learning) since it sent the step."""
        start, answers = time.monotonic(), {}
        for i, (command, _) in commands.items():
            seconds = self._timeout(command)
            try:
                answers[i] = self.workers[i].recv(start + seconds if seconds else None, seconds)
            except WorkerFault as fault:
                answers[i] = fault
        return answers

    def _fault(self, i: int, kind: str, message: str, events: list[str]) -> None:
        self._streak[i] += 1
        events.append(f"{kind}: env {i}: {message}")
        if self._streak[i] > MAX_FAULT_STREAK:
            raise EnvWorkerError(
                f"env {i} failed {self._streak[i]} times in a row; last: {events[-1]}"
            )

    def _restart(self, i: int, fault: WorkerFault, events: list[str]) -> None:
        """Kill worker i and start a fresh env whose first reset gets a new seed."""
        self._fault(i, fault.kind, f"{fault.message}; worker restarted", events)
        while True:
            self.workers[i].kill()
            self.restarts += 1
            self.workers[i] = _Worker(self._ctx, self.env_fns[i])
            try:
                self._handshake(i)
                break
            except WorkerFault as again:
                self._fault(i, again.kind, f"restart failed: {again.message}", events)
        old = self._seeds[i]
        # a seed no other env uses (they differ by their index), yet reproducible
        self._seeds[i] = None if old is None else (old + 1_000_003) % 2**31
        self._pending_seed[i] = self._seeds[i]

    def _take_reset(self, i: int, answer: Any, events: list[str]) -> tuple[Any, dict]:
        """Env i's reset observation; a failed reset is retried (in a fresh worker)."""
        while True:
            if isinstance(answer, WorkerFault):
                self._restart(i, answer, events)
            else:
                obs, info = answer
                bad = _nonfinite(obs)
                if not bad:
                    self._last_obs[i] = obs
                    self._needs_reset[i] = False
                    return obs, info
                self._fault(i, "nonfinite_observation", f"{bad} on reset", events)
            seed, self._pending_seed[i] = self._pending_seed[i], None
            answer = self._exchange({i: ("reset", seed)})[i]

    def _take_step(self, i: int, answer: Any, events: list[str]) -> tuple:
        """Env i's step; a fault ends the episode as a truncation at the last good obs."""
        if isinstance(answer, WorkerFault):
            self._restart(i, answer, events)
            self._needs_reset[i] = True
            return self._last_obs[i], 0.0, False, True, {"worker_restarted": True}
        obs, reward, term, trunc, info = answer
        bad = _nonfinite(obs, reward)
        if bad:  # never hand NaN/inf to the learner
            self._fault(i, "nonfinite_observation", f"{bad}; episode truncated", events)
            self._needs_reset[i] = True
            return self._last_obs[i], 0.0, False, True, {**info, "nonfinite_observation": True}
        self._last_obs[i], self._streak[i] = obs, 0
        self._needs_reset[i] = bool(term or trunc)
        return obs, float(reward), bool(term), bool(trunc), info

    def _batch(self, observations: list[Any]) -> Any:
        out = create_empty_array(self.single_observation_space, self.num_envs, fn=np.zeros)
        assert out is not None  # None only for spaces without a fixed-size batch (Graph, ...)
        return concatenate(self.single_observation_space, observations, out)

    def _info(self, infos: dict, i: int, info: dict, events: list[str]) -> dict:
        if events:  # one line per env and step, whatever happened in it
            info = {**info, "env_fault": "; ".join(events), "worker_restarts": self.restarts}
        return self._add_info(infos, info, i)

    # ----------------------------------------------------------- the API
    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None
    ) -> tuple[Any, dict]:
        self._drop_in_flight()
        n = self.num_envs
        seeds: list[int | None]
        if seed is None or isinstance(seed, Sequence):
            seeds = list(seed) if seed is not None else [None] * n
        else:
            seeds = [int(seed) + i for i in range(n)]  # as gymnasium's vector envs do
        self._seeds, self._pending_seed = list(seeds), [None] * n
        answers = self._exchange({i: ("reset", seeds[i]) for i in range(n)})
        observations: list[Any] = []
        infos: dict[str, Any] = {}
        for i in range(n):
            events: list[str] = []
            obs, info = self._take_reset(i, answers[i], events)
            observations.append(obs)
            infos = self._info(infos, i, info, events)
        return self._batch(observations), infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: Any) -> None:
        """Send the actions and return at once: the workers step while the caller works.

        `step_wait` collects the result; `reset` and `close` first collect (and drop) the
        answers of a step that was sent but never waited for.
        """
        if self._in_flight is not None:
            raise RuntimeError("step_async called twice without step_wait")
        n = self.num_envs
        actions = list(iterate(self.action_space, actions))
        commands = {}
        for i in range(n):
            if self._needs_reset[i]:  # NEXT_STEP: this step is the new episode's first
                seed, self._pending_seed[i] = self._pending_seed[i], None
                commands[i] = ("reset", seed)
            else:
                commands[i] = ("step", actions[i])
        self._send(commands)
        self._in_flight = commands

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        commands, self._in_flight = self._in_flight, None
        if commands is None:
            raise RuntimeError("step_wait called without step_async")
        n = self.num_envs
        answers = self._gather(commands)
        observations: list[Any] = []
        infos: dict[str, Any] = {}
        rewards = np.zeros(n, np.float64)
        terminated, truncated = np.zeros(n, bool), np.zeros(n, bool)
        for i in range(n):
            events: list[str] = []
            if commands[i][0] == "reset":
                obs, info = self._take_reset(i, answers[i], events)
            else:
                obs, rewards[i], terminated[i], truncated[i], info = self._take_step(
                    i, answers[i], events
                )
            observations.append(obs)
            infos = self._info(infos, i, info, events)
        return self._batch(observations), rewards, terminated, truncated, infos

    def _drop_in_flight(self) -> None:
        """Collect and drop the answers of a step sent but never waited for (the caller
        stopped in between, e.g. on Ctrl-C), so they are not read as the next answers."""
        if getattr(self, "_in_flight", None) is not None:  # None too before the handshake
            self.step_wait()

    def close_extras(self, **kwargs: Any) -> None:
        try:
            self._drop_in_flight()
        except Exception:  # noqa: BLE001 - closing anyway; the workers are killed below
            pass
        for worker in self.workers:
            worker.send("close")
        for worker in self.workers:  # all are told first, so they close in parallel
            worker.join()

    def __del__(self) -> None:
        if not getattr(self, "closed", True) and hasattr(self, "workers"):
            self.close()


def _nonfinite(obs: Any, reward: Any = 0.0) -> str:
    """What in an observation (dict or array) or reward is NaN/inf; '' if nothing."""
    items = obs.items() if isinstance(obs, dict) else [("observation", obs)]
    bad = [
        f"observation {key!r}"
        for key, value in items
        if np.asarray(value).dtype.kind in "fc" and not np.isfinite(value).all()
    ]
    if not np.isfinite(np.asarray(reward, np.float64)):
        bad.append(f"reward {float(reward)}")
    return f"non-finite {', '.join(bad)}" if bad else ""
