"""``python -m keras_ternary sweep``: run the runs of a sweep file, here or on a Ray cluster.

Finished runs are skipped and partial ones resumed, so the same command continues an
interrupted sweep. Exit status 1 when a run failed.
"""

from __future__ import annotations

import argparse
import os

from keras_ternary.cliutil import CliError
from keras_ternary.commands.options import (
    add_run_control,
    non_negative_float,
    positive_float,
    yaml_value,
)

__all__ = ["NEEDS_TENSORFLOW", "add_arguments", "run"]

NEEDS_TENSORFLOW = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m keras_ternary sweep``."""
    parser.add_argument(
        "sweep",
        help="sweep file (YAML/TOML with base/set/runs/grid) or shipped name, e.g. paper/table1 "
        "or reduced/reproduce (see `configs`)",
    )
    parser.add_argument(
        "--out-root", default="runs", help="runs go to OUT_ROOT/<sweep>/<run> (default: runs)"
    )
    parser.add_argument(
        "--data-dir",
        help="directory with the CIFAR-10 binary files, for every run [data.dir]",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override applied to every run (repeatable), e.g. --set epochs=2",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only the runs whose name contains TEXT (repeatable)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the runs and their status, then exit"
    )
    parser.add_argument(
        "--stop-on-error",
        action="store_true",
        help="stop the sweep at the first failing run (default: report it and go on)",
    )
    cluster = parser.add_argument_group(
        "on a Ray cluster (needs the 'cluster' extra; see docs/distributed.md)"
    )
    cluster.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run every run as a Ray task: 'local' (start Ray on this machine), 'auto' (the "
        "cluster of this node, or RAY_ADDRESS), 'ray://HOST:PORT' (Ray client) or a head "
        "node's HOST:PORT. --out-root must be shared storage at the same path on every node",
    )
    cluster.add_argument(
        "--gpus-per-run",
        type=non_negative_float,
        metavar="N",
        help="GPUs of each run's task (default: 1 when the cluster has GPUs, else 0)",
    )
    cluster.add_argument(
        "--cpus-per-run",
        type=positive_float,
        metavar="N",
        help="CPUs of each run's task (default: with GPUs, a GPU node's CPUs per GPU; without, "
        "a node's CPUs split into runs of at most 8)",
    )
    add_run_control(parser)


def run(args: argparse.Namespace) -> int:
    """List the sweep's runs (``--list``) or run them; 1 when a run failed."""
    from keras_ternary.rundir import run_status
    from keras_ternary.sweep import SweepStopped, load_sweep, run_sweep

    if args.ray is None and (args.gpus_per_run is not None or args.cpus_per_run is not None):
        raise CliError("--gpus-per-run and --cpus-per-run need --ray ADDRESS")
    overrides = list(args.set)
    if args.data_dir:
        overrides.append(f"data.dir={yaml_value(args.data_dir)}")
    out_root = os.path.abspath(args.out_root) if args.ray else args.out_root  # same on workers
    name, runs = load_sweep(args.sweep, out_root, overrides)
    if args.only:
        runs = [r for r in runs if any(text in r.name for text in args.only)]
        if not runs:
            raise CliError(f"no run of sweep {name} matches --only {' '.join(args.only)}")
    if args.list:
        for r in runs:
            print(f"{run_status(r.config.run_dir):9s} {r.config.run_dir}")
        return 0
    time_limit = None if args.time_limit is None else 60.0 * args.time_limit
    try:
        if args.ray:
            from keras_ternary.ray_sweep import run_sweep_on_ray

            result = run_sweep_on_ray(
                runs,
                address=args.ray,
                out_root=os.path.join(out_root, name),
                cpus_per_run=args.cpus_per_run,
                gpus_per_run=args.gpus_per_run,
                time_limit=time_limit,
                keep_going=not args.stop_on_error,
                sweep_name=name,
            )
        else:
            result = run_sweep(
                runs,
                time_limit=time_limit,
                verbose=args.verbose,
                keep_going=not args.stop_on_error,
                sweep_name=name,
            )
    except SweepStopped:  # run_sweep reported the failing run on stderr
        return 1
    return 1 if result.failed else 0
