"""Run the runs of a sweep as Ray tasks on a cluster: ``sweep SWEEP --ray ADDRESS``.

Ray (the optional ``cluster`` extra) schedules the tasks; this module only submits one task
per run and collects the outcomes, with the semantics of :func:`keras_ternary.sweep.run_sweep`:
finished runs are skipped, partial ones resumed, a failing run is reported with its name and
error line and the others go on (or, with ``keep_going=False``, the others are stopped).

Each task trains its run in a child process (``python -m keras_ternary train --config FILE
--resume``) on the node Ray chose. A child process gives every run a fresh TensorFlow (whose
memory is returned to the system when the run ends, and a crash in native code takes down the
run, not the Ray worker) and stops cleanly: cancelling the task (Ctrl-C in the driver,
``--stop-on-error``) interrupts the child like Ctrl-C would, at a point where the run directory
is consistent, and a child whose Ray worker dies is sent SIGTERM by the kernel. Every write of a
run is atomic, so in all these cases the run stays resumable and the same command continues it.

The run directories live under ``--out-root``, which the driver and every worker must see at
the same path (shared storage on a cluster); :func:`check_shared_dir` verifies that with one
small task per node before anything is submitted.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keras_ternary.cliutil import EXIT_INTERRUPTED, EXIT_TERMINATED
from keras_ternary.config import dump_yaml
from keras_ternary.sweep import (
    SweepResult,
    SweepRun,
    SweepStopped,
    failure_message,
    runs_to_do,
)

__all__ = [
    "ClusterError",
    "Resources",
    "check_shared_dir",
    "connect",
    "default_resources",
    "run_sweep_on_ray",
]

INSTALL_HINT = 'pip install -e ".[cluster]"'
#: Object store of a ``local`` Ray instance: the tasks exchange only small dictionaries.
LOCAL_OBJECT_STORE_BYTES = 128 * 1024**2
#: Without GPUs, a node's CPUs are shared by runs of at most this many CPUs each.
MAX_CPUS_PER_RUN = 8
#: Seconds a cancelled run's child process gets to stop after SIGINT before it is killed.
STOP_GRACE_S = 60.0
#: How often a task checks its child (and so how fast it notices a cancellation), seconds.
POLL_S = 0.5


class ClusterError(RuntimeError):
    """Ray is missing or unreachable, or the cluster cannot run the sweep as asked."""


@dataclass(frozen=True)
class Resources:
    """What one run's task asks Ray for."""

    cpus: float
    gpus: float

    def describe(self) -> str:
        return f"{self.cpus:g} CPU{'s' if self.cpus != 1 else ''}, {self.gpus:g} GPU"


# --------------------------------------------------------------------------- connecting
def import_ray() -> Any:
    """The ``ray`` module, or ClusterError saying how to install it."""
    # every run's epoch lines matter: no merging of similar lines, no colours in logs
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(
            f"--ray needs Ray, which is not installed ({exc}); install it with: {INSTALL_HINT}"
        ) from None
    return ray


def connect(address: str) -> tuple[Any, bool]:
    """Connect to Ray; return ``(ray, started)`` (``started``: call ``ray.shutdown()`` after).

    ``address`` is ``local`` (start a Ray instance on this machine, no dashboard, a small
    object store), ``auto`` (the cluster this node belongs to, or ``RAY_ADDRESS``), a
    ``ray://host:port`` client address or a head node's ``host:port``. A process already
    connected to Ray (``ray.is_initialized()``) keeps its connection.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    kwargs: dict[str, Any] = {"address": address, "log_to_driver": True}
    if address == "local":
        kwargs.update(include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES)
    try:
        ray.init(**kwargs)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError, ...
        raise ClusterError(f"cannot connect to Ray at {address}: {_one_line(exc)}") from None
    return ray, True


def _alive_nodes(ray: Any) -> list[dict[str, Any]]:
    return [node for node in ray.nodes() if node.get("Alive")]


def default_resources(nodes: list[dict[str, Any]]) -> Resources:
    """One GPU per run when the cluster has GPUs, else a node's CPUs divided into runs.

    With GPUs, a run also gets its share of a GPU node's CPUs (CPUs / GPUs of the least
    endowed GPU node) for the input pipeline. Without, the largest node's N CPUs are divided
    into ``ceil(N / MAX_CPUS_PER_RUN)`` runs (2 CPUs: one run of 2; 32 CPUs: four runs of 8).
    """
    resources = [node.get("Resources", {}) for node in nodes]
    gpu_nodes = [r for r in resources if r.get("GPU", 0) >= 1]
    if gpu_nodes:
        cpus = min(r.get("CPU", 0) // r["GPU"] for r in gpu_nodes)
        return Resources(cpus=max(1.0, float(cpus)), gpus=1.0)
    node_cpus = max((int(r.get("CPU", 0)) for r in resources), default=1)
    node_cpus = max(1, node_cpus)
    return Resources(cpus=float(node_cpus // math.ceil(node_cpus / MAX_CPUS_PER_RUN)), gpus=0.0)


def _fits(node: dict[str, Any], need: Resources) -> bool:
    have = node.get("Resources", {})
    return have.get("CPU", 0) >= need.cpus and have.get("GPU", 0) >= need.gpus


# --------------------------------------------------------------------------- shared storage
def _probe_on_worker(root: str, token: str) -> dict[str, str]:
    """Ray task: read the driver's probe file under ``root``, write, read back one of ours."""
    node = os.uname().nodename
    theirs = Path(root) / f".ray-probe-{token}"
    try:
        seen = theirs.read_text()
    except OSError as exc:
        return {"node": node, "error": f"cannot read the probe file the driver wrote ({exc})"}
    if seen != token:
        return {"node": node, "error": f"{theirs} holds other content than the driver wrote"}
    ours = Path(root) / f".ray-probe-{token}-{uuid.uuid4().hex[:8]}"
    try:
        ours.write_text(token)
        if ours.read_text() != token:
            raise OSError("read back other content than written")
    except OSError as exc:
        ours.unlink(missing_ok=True)
        return {"node": node, "error": f"cannot write there ({exc})"}
    return {"node": node, "file": str(ours)}


def check_shared_dir(
    ray: Any, root: Path, nodes: list[dict[str, Any]], timeout: float = 300
) -> None:
    """ClusterError unless this process and a task on each of ``nodes`` share ``root``.

    The driver writes a probe file under ``root``; one task per node reads it, writes its own
    and reads it back; the driver then reads every worker's file and deletes them all.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    ours = root / f".ray-probe-{token}"
    where = f"--out-root {root}"
    advice = "on a cluster it must be shared storage mounted at the same path on every node"
    try:
        root.mkdir(parents=True, exist_ok=True)
        ours.write_text(token)
    except OSError as exc:
        raise ClusterError(f"{where} is not writable here: {exc}") from None
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe_on_worker)
    refs = [
        probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ).remote(str(root), token)
        for node in nodes
    ]
    written: list[Path] = []
    try:
        try:
            answers = ray.get(refs, timeout=timeout)
        except Exception as exc:
            raise ClusterError(
                f"{where}: the probe tasks did not answer: {_one_line(exc)}"
            ) from None
        for answer in answers:
            if "error" in answer:
                raise ClusterError(
                    f"{where} is not usable from the Ray worker on {answer['node']}: "
                    f"{answer['error']}; {advice}"
                )
            written.append(Path(answer["file"]))
            if not written[-1].is_file():
                raise ClusterError(
                    f"{where}: a file the Ray worker on {answer['node']} wrote there is not "
                    f"visible here; {advice}"
                )
    finally:
        for path in (ours, *written):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- one run (worker)
_CHILD_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Exit statuses of a child that was interrupted (``train``'s own on SIGINT and SIGTERM,
#: or killed by the signal).
_INTERRUPTED = (EXIT_INTERRUPTED, EXIT_TERMINATED, -signal.SIGINT, -signal.SIGTERM)


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Let the child be interrupted (Ray workers block and ignore SIGINT, which a child inherits)
    and, on Linux, SIGTERM it when the Ray worker that started it dies."""
    for sig in _CHILD_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _CHILD_SIGNALS)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _run_on_worker(
    name: str, config_yaml: str, cwd: str, deadline: float | None, cpus: float
) -> dict[str, Any]:
    """Ray task: train one run in a child process; its exit status and error line.

    The child's output (its one line per epoch, no Keras progress output) is printed with a
    ``[name]`` prefix; Ray forwards it to the driver.
    A cancellation (KeyboardInterrupt) interrupts the child with SIGINT, waits for it to stop,
    then propagates.
    """
    started = time.time()
    node = os.uname().nodename
    if deadline is not None and deadline - started < 1:
        return {"status": "pending", "node": node}
    with tempfile.TemporaryDirectory(prefix="keras-ternary-") as tmp:
        config_file = Path(tmp) / "config.yaml"
        config_file.write_text(config_yaml)
        argv = [sys.executable, "-m", "keras_ternary", "train", "--config", str(config_file)]
        argv += ["--resume", "--verbose", "0"]
        if deadline is not None:
            argv += ["--time-limit", f"{(deadline - started) / 60:.6f}"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, int(cpus))))
        child = subprocess.Popen(
            argv,
            cwd=cwd if os.path.isdir(cwd) else None,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            preexec_fn=_child_setup,
        )
        tail: collections.deque[str] = collections.deque(maxlen=50)
        reader = threading.Thread(target=_relay, args=(child, name, tail), daemon=True)
        reader.start()
        try:
            while child.poll() is None:
                time.sleep(POLL_S)
        except KeyboardInterrupt:  # ray.cancel: stop the run where it is resumable
            _stop(child)
            raise
        reader.join(timeout=10)
    return {
        "status": "exited",
        "returncode": child.returncode,
        "error": _error_line(list(tail), child.returncode),
        "node": node,
        "start": started,
        "end": time.time(),
        "pid": child.pid,
    }


def _relay(child: subprocess.Popen, name: str, tail: collections.deque[str]) -> None:
    for line in child.stdout:
        tail.append(line.rstrip("\n"))
        print(f"[{name}] {line}", end="", flush=True)


def _stop(child: subprocess.Popen) -> None:
    """SIGINT (the run ends like on Ctrl-C), then SIGKILL if it does not stop in time."""
    child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _error_line(lines: list[str], returncode: int) -> str:
    """The child's ``error:`` line, else its last line (a traceback's), else its exit status."""
    errors = [ln for ln in lines if ln.startswith("error:")]
    if errors:
        return errors[-1].removeprefix("error:").strip()
    if returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
    return f"exit status {returncode}" + (f": {last}" if last else "")


# --------------------------------------------------------------------------- the sweep (driver)
def run_sweep_on_ray(
    runs: list[SweepRun],
    *,
    address: str,
    out_root: str | os.PathLike,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
    time_limit: float | None = None,
    keep_going: bool = True,
    sweep_name: str = "sweep",
    log: Callable[[str], None] = lambda message: print(message, flush=True),
    error_log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True),
) -> SweepResult:
    """Run ``runs`` as Ray tasks (see the module docstring); the outcome per run.

    ``out_root`` (the runs' common root, absolute) is checked first for being shared with the
    workers. ``time_limit`` (seconds) is for the whole sweep: a run starting after it is left
    pending, a running one stops at the end of the epoch that crosses it. KeyboardInterrupt
    cancels every task (each run stops where it is resumable) and propagates.
    """
    from keras_ternary.rundir import run_status

    ray, started = connect(address)
    try:
        nodes = _alive_nodes(ray)
        defaults = default_resources(nodes)
        need = Resources(
            cpus=defaults.cpus if cpus_per_run is None else cpus_per_run,
            gpus=defaults.gpus if gpus_per_run is None else gpus_per_run,
        )
        fitting = [node for node in nodes if _fits(node, need)]
        log(
            f"ray: {len(nodes)} node(s), {len(fitting)} can run a run of {need.describe()}; "
            f"{len(runs)} run(s) in sweep {sweep_name}"
        )
        if not fitting:
            log(
                f"warning: no node of the Ray cluster has {need.describe()}; the runs wait until "
                "one joins (lower --cpus-per-run / --gpus-per-run otherwise)"
            )
        check_shared_dir(ray, Path(out_root), fitting or nodes)
        deadline = None if time_limit is None else time.time() + time_limit
        return _submit_and_collect(
            ray, runs, need, deadline, keep_going, sweep_name, run_status, log, error_log
        )
    finally:
        if started:
            ray.shutdown()


def _submit_and_collect(
    ray: Any,
    runs: list[SweepRun],
    need: Resources,
    deadline: float | None,
    keep_going: bool,
    sweep_name: str,
    run_status: Callable[[Path], str],
    log: Callable[[str], None],
    error_log: Callable[[str], None],
) -> SweepResult:
    result = SweepResult()
    task = ray.remote(_run_on_worker).options(
        num_cpus=need.cpus, num_gpus=need.gpus, max_retries=3, retry_exceptions=False
    )
    pending: dict[Any, tuple[str, SweepRun]] = {}
    for header, run, status in runs_to_do(runs, result, log):
        what = "resuming" if status == "partial" else "starting"
        log(f"{header}: {what} in {run.config.run_dir} (Ray task, {need.describe()})")
        ref = task.remote(run.name, dump_yaml(run.config), os.getcwd(), deadline, need.cpus)
        pending[ref] = (header, run)
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            header, run = pending.pop(done[0])
            outcome, reason = _outcome(ray, done[0], run, run_status)
            getattr(result, outcome).append(run.name)
            if outcome != "failed":
                log(f"{header}: {outcome}")
                continue
            log(f"{header}: FAILED: {reason}")
            error_log(failure_message(sweep_name, run.name, reason))
            if not keep_going:
                _cancel(ray, pending, result, run_status, log)
                raise SweepStopped(reason)
    except KeyboardInterrupt:
        log("interrupted: stopping the runs (each stays resumable; rerun the same command)")
        _cancel(ray, pending, result, run_status, log)
        raise
    log(result.summary())
    return result


def _outcome(
    ray: Any, ref: Any, run: SweepRun, run_status: Callable[[Path], str]
) -> tuple[str, str]:
    """("finished" | "stopped" | "pending" | "failed", reason) of one task."""
    from ray.exceptions import TaskCancelledError

    try:
        answer = ray.get(ref)
    except TaskCancelledError:
        return ("stopped" if run_status(run.config.run_dir) != "new" else "pending"), ""
    except Exception as exc:  # the worker or its node died, even after Ray's retries
        return "failed", f"Ray task lost: {type(exc).__name__}: {_one_line(exc)[:300]}"
    if answer["status"] == "pending":
        return "pending", ""
    if answer["returncode"] in _INTERRUPTED:  # e.g. Ctrl-C reached the child directly
        return ("stopped" if run_status(run.config.run_dir) != "new" else "pending"), ""
    if answer["returncode"] != 0:
        return "failed", answer["error"]
    finished = run_status(run.config.run_dir) == "finished"
    return ("finished" if finished else "stopped"), ""


def _cancel(
    ray: Any,
    pending: dict[Any, tuple[str, SweepRun]],
    result: SweepResult,
    run_status: Callable[[Path], str],
    log: Callable[[str], None],
) -> None:
    """Cancel every task, wait until their runs have stopped, record them."""
    for ref in pending:
        ray.cancel(ref)
    for ref, (header, run) in list(pending.items()):
        outcome, reason = _outcome(ray, ref, run, run_status)
        getattr(result, outcome).append(run.name)
        log(f"{header}: {outcome}" + (f": {reason}" if reason else ""))
    pending.clear()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
