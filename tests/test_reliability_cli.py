"""Bad input to every command line: one ``error:`` line, non-zero exit, nothing written.

Each :class:`CliCase` runs one command in-process (``keras_ternary.cli.main``,
``hw_sim.profile.main``) inside a prepared workspace and checks the CLI contract of
``/work/notes/COMMON.md``:

* the exit status is non-zero and no exception escapes ``main`` (it would print a traceback);
* stderr holds exactly one line, containing ``error:`` and every expected fragment;
* the workspace is unchanged: no file or directory created, modified or removed.

One subprocess test checks the same contract end to end (``python -m keras_ternary``), where
TensorFlow's native start-up lines are the only other output allowed on stderr.
``docs/errors.md`` is generated from :data:`CLI_CASES` (``tests/test_reliability_docs.py``).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import traceback
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow as tf

from keras_ternary import cli as kcli
from keras_ternary import data as kdata
from keras_ternary import run_callbacks, rundir, training
from keras_ternary.config import dump_yaml, load_config
from tests.helpers import tiny_ternary_model

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class CliCase:
    """``cli argv`` (``{ws}`` = workspace) must fail with one line holding ``fragments``."""

    id: str
    cli: str  # "train", "sweep", "report", "quickstart", "export" or "hw_sim.profile"
    what: str  # the bad input, in words (for docs/errors.md)
    argv: tuple[str, ...]
    fragments: tuple[str, ...]
    xfail: str | None = None  # "owner (file): what is wrong now" until the fix lands
    forbid: tuple[str, ...] = ()  # text that must not appear in the message
    status: int = 2  # bad input; a sweep whose run failed exits 1 (the sweep itself was valid)


def _c(id_, cli, what, argv, fragments, xfail=None, forbid=(), status=2):
    return CliCase(id_, cli, what, tuple(argv.split()), tuple(fragments), xfail, forbid, status)


_TINY = "--config {ws}/tiny.yaml"

CLI_CASES: tuple[CliCase, ...] = (
    # --- train: configuration files ----------------------------------------------------
    _c(
        "train-config-missing",
        "train",
        "config file does not exist",
        "train --config {ws}/nothere.yaml --out {ws}/o",
        ["nothere.yaml not found"],
    ),
    _c(
        "train-config-dir",
        "train",
        "config path is a directory",
        "train --config {ws}/cfg --out {ws}/o",
        ["{ws}/cfg is a directory"],
    ),
    _c(
        "train-config-binary",
        "train",
        "config file is not UTF-8 text",
        "train --config {ws}/cfg/binary.yaml --out {ws}/o",
        ["cannot read config"],
    ),
    _c(
        "train-config-yaml-syntax",
        "train",
        "YAML syntax error",
        "train --config {ws}/cfg/syntax.yaml --out {ws}/o",
        ["cannot read config", "syntax.yaml"],
    ),
    _c(
        "train-config-toml-syntax",
        "train",
        "TOML syntax error",
        "train --config {ws}/cfg/syntax.toml --out {ws}/o",
        ["cannot read config", "syntax.toml"],
    ),
    _c(
        "train-config-list",
        "train",
        "top level is a list",
        "train --config {ws}/cfg/list.yaml --out {ws}/o",
        ["must hold a mapping"],
    ),
    _c(
        "train-config-unknown-key",
        "train",
        "unknown key",
        "train --config {ws}/cfg/unknown.yaml --out {ws}/o",
        ["unknown key foo", "allowed:"],
    ),
    _c(
        "train-config-extends-missing",
        "train",
        "`extends:` names a missing file",
        "train --config {ws}/cfg/extends_missing.yaml --out {ws}/o",
        ["nothere.yaml not found"],
    ),
    _c(
        "train-config-extends-self",
        "train",
        "`extends:` cycle",
        "train --config {ws}/cfg/self.yaml --out {ws}/o",
        ["extends itself"],
    ),
    _c(
        "train-config-epochs",
        "train",
        "epochs: 0 in the file",
        "train --config {ws}/cfg/epochs0.yaml --out {ws}/o",
        ["invalid value for epochs"],
    ),
    # --- train: options and hyper-parameters --------------------------------------------
    _c(
        "train-epochs-text",
        "train",
        "--epochs x",
        "train --epochs x",
        ["argument --epochs", "invalid int value"],
    ),
    _c(
        "train-epochs-zero",
        "train",
        "--epochs 0",
        f"train {_TINY} --epochs 0",
        ["invalid value for epochs"],
    ),
    _c(
        "train-delta0-nan",
        "train",
        "--delta0 nan",
        f"train {_TINY} --delta0 nan",
        ["delta0 must be > 0"],
    ),
    _c(
        "train-delta0-large",
        "train",
        "--delta0 2 (above delta_max)",
        f"train {_TINY} --delta0 2",
        ["delta_max must satisfy"],
    ),
    _c(
        "train-regime",
        "train",
        "--regime foo",
        f"train {_TINY} --regime foo",
        ["ternary.regime", "fixed, linear, square, exp, log"],
    ),
    _c(
        "train-quantizer",
        "train",
        "--quantizer foo",
        f"train {_TINY} --quantizer foo",
        ["model.quantizer"],
    ),
    _c(
        "train-paper-epochs-inf",
        "train",
        "--paper-epochs inf",
        f"train {_TINY} --paper-epochs inf",
        ["paper_epochs"],
    ),
    _c(
        "train-lr-count",
        "train",
        "learning rates and boundaries do not match",
        f"train {_TINY} --set optimizer.lr_values=[0.1,0.2,0.3]",
        ["one more learning rate"],
    ),
    _c(
        "train-set-syntax",
        "train",
        "--set without '='",
        f"train {_TINY} --set noequals",
        ["must look like section.key=value"],
    ),
    # --- train: run directories -------------------------------------------------------------
    _c(
        "train-out-file",
        "train",
        "--out is an existing file",
        f"train {_TINY} --out {{ws}}/afile",
        ["{ws}/afile"],
    ),
    _c(
        "train-out-under-file",
        "train",
        "--out below a regular file",
        f"train {_TINY} --out {{ws}}/afile/run",
        ["{ws}/afile"],
    ),
    _c(
        "train-out-not-run",
        "train",
        "--out is a non-empty directory that is not a run",
        f"train {_TINY} --out {{ws}}/notrun",
        ["is not empty and is not a run directory"],
    ),
    _c(
        "train-existing-run",
        "train",
        "--out holds a run, no --resume",
        f"train {_TINY} --out {{ws}}/runs/ok",
        ["already holds a partial run", "--resume"],
    ),
    _c(
        "train-resume-changed",
        "train",
        "--resume with a changed option",
        f"train {_TINY} --out {{ws}}/runs/ok --resume --epochs 7",
        ["different configuration"],
    ),
    _c(
        "train-resume-extra-options",
        "train",
        "--resume RUN_DIR plus other options",
        "train --resume {ws}/runs/ok --epochs 7",
        ["--resume RUN_DIR takes the run's stored"],
    ),
    _c(
        "train-resume-missing",
        "train",
        "--resume of a missing directory",
        "train --resume {ws}/nothere",
        ["is not a run directory"],
    ),
    _c(
        "train-resume-config-binary",
        "train",
        "--resume, config.yaml not UTF-8",
        "train --resume {ws}/runs/cfg_binary",
        ["config.yaml"],
    ),
    _c(
        "train-resume-ckpt-truncated",
        "train",
        "--resume, last.h5 truncated",
        "train --resume {ws}/runs/ckpt_truncated",
        ["last.h5 is unreadable"],
    ),
    _c(
        "train-resume-ckpt-float",
        "train",
        "--resume, last.h5 is a float Keras model",
        "train --resume {ws}/runs/ckpt_float",
        ["lacks the run state"],
    ),
    _c(
        "train-resume-ckpt-no-optimizer",
        "train",
        "--resume, last.h5 has the run state but no optimizer (saved without it)",
        "train --resume {ws}/runs/ckpt_no_optimizer",
        ["last.h5", "optimizer"],
    ),
    _c(
        "train-resume-state-garbage",
        "train",
        "--resume, run state lacks epochs_done",
        "train --resume {ws}/runs/state_garbage",
        ["last.h5"],
    ),
    _c(
        "train-resume-history-garbage",
        "train",
        "--resume, history.csv corrupt",
        "train --resume {ws}/runs/history_garbage",
        ["history.csv"],
    ),
    # --- train: bounded input (issue #19) ----------------------------------------------------
    _c(
        "train-config-empty",
        "train",
        "config file is empty",
        "train --config {ws}/cfg/empty.yaml --out {ws}/o",
        ["empty.yaml is empty"],
        forbid=("CIFAR-10",),
    ),
    _c(
        "train-config-alias-bomb",
        "train",
        "YAML alias bomb (a few hundred bytes expanding to 10⁹ values)",
        "train --config {ws}/cfg/bomb.yaml --out {ws}/o",
        ["bomb.yaml", "YAML aliases"],
    ),
    _c(
        "train-config-huge",
        "train",
        "config file larger than 1 MB",
        "train --config {ws}/cfg/huge.yaml --out {ws}/o",
        ["huge.yaml is too large"],
    ),
    _c(
        "train-config-fifo",
        "train",
        "config path is a FIFO (would block)",
        "train --config {ws}/fifo.yaml --out {ws}/o",
        ["not a regular file"],
    ),
    _c(
        "train-config-symlink-loop",
        "train",
        "config path is a symbolic link loop",
        "train --config {ws}/loop_a --out {ws}/o",
        ["symbolic link loop"],
        forbid=("not found",),
    ),
    _c(
        "train-blocks-huge",
        "train",
        "--set model.blocks_per_stage=1000000000000",
        f"train {_TINY} --set model.blocks_per_stage=1000000000000",
        ["invalid value for model.blocks_per_stage", "<= 100"],
    ),
    _c(
        "train-epochs-huge",
        "train",
        "--set epochs=1.0e+300",
        f"train {_TINY} --set epochs=1.0e+300",
        ["invalid value for epochs", "<= 1000000"],
    ),
    _c(
        "train-seed-2-32",
        "train",
        "--seed 4294967296 (seeds are 32-bit)",
        f"train {_TINY} --seed 4294967296",
        ["invalid value for seed", "<= 4294967295"],
    ),
    _c(
        "train-long-value",
        "train",
        "a 5000-character value",
        f"train {_TINY} --set model.quantizer=[{'1,' * 2500}1]",
        ["model.quantizer", "list of 2501 items"],
        forbid=("1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",),
    ),
    _c(
        "train-name-dotdot",
        "train",
        "--name .. (a run outside runs/)",
        f"train {_TINY} --name ..",
        ["invalid value for name", "not a plain file name"],
    ),
    _c(
        "train-name-nul",
        "train",
        "a NUL byte in --name",
        f"train {_TINY} --name a\x00b",
        ["invalid value for name"],
    ),
    _c(
        "train-out-nul",
        "train",
        "a NUL byte in --out",
        f"train {_TINY} --out {{ws}}/a\x00b",
        ["invalid value for out_dir", "NUL"],
    ),
    # --- train: resume integrity, lock, safe loading (issue #19) -----------------------------
    _c(
        "train-resume-no-last",
        "train",
        "--resume, history.csv present but checkpoints/last.h5 missing",
        "train --resume {ws}/runs/no_last",
        ["holds results (history.csv)", "no checkpoints/last.h5", "--force-new"],
    ),
    _c(
        "train-new-over-results",
        "train",
        "plain train into a run whose last.h5 is missing (would restart it)",
        f"train {_TINY} --out {{ws}}/runs/no_last",
        ["no checkpoints/last.h5", "nothing was changed", "--force-new"],
    ),
    _c(
        "train-resume-seed-edited",
        "train",
        "--resume after seed was edited in config.yaml",
        "train --resume {ws}/runs/seed_edited",
        ["config.yaml differs", "seed 0 vs 1", "--force-new"],
    ),
    _c(
        "train-resume-delta-edited",
        "train",
        "--resume after delta0 was edited in config.yaml (run of an older version)",
        "train --resume {ws}/runs/delta_edited",
        ["history.csv epoch 1 has delta", "config edited?"],
    ),
    _c(
        "train-resume-width-edited",
        "train",
        "--resume after inflation was edited in config.yaml (checkpoint of another width)",
        "train --resume {ws}/runs/width_edited",
        ["checkpoint's model does not match", "model.inflation 1 vs 2"],
    ),
    _c(
        "train-resume-ckpt-binary",
        "train",
        "--resume of a binary checkpoint under a ternary config",
        "train --resume {ws}/runs/ckpt_binary",
        ["model.quantizer 'binary' vs 'ternary'"],
    ),
    _c(
        "train-resume-history-gap",
        "train",
        "--resume, history.csv epochs 1, 3",
        "train --resume {ws}/runs/history_gap",
        ["rows are missing or repeated"],
    ),
    _c(
        "train-resume-history-short",
        "train",
        "--resume, history.csv has fewer rows than the checkpoint's epochs",
        "train --resume {ws}/runs/history_short",
        ["has 0 epoch(s)", "after epoch 1"],
    ),
    _c(
        "train-resume-history-cut",
        "train",
        "--resume, the last history row is cut short",
        "train --resume {ws}/runs/history_cut",
        ["row of epoch 1 is incomplete"],
    ),
    _c(
        "train-resume-history-dir",
        "train",
        "--resume, history.csv is a directory",
        "train --resume {ws}/runs/history_dir",
        ["history.csv is a directory"],
    ),
    _c(
        "train-resume-lambda",
        "train",
        "--resume, last.h5 holds a Lambda layer (code)",
        "train --resume {ws}/runs/ckpt_lambda",
        ["holds Python code (Lambda layer", "--unsafe-load"],
    ),
    _c(
        "train-resume-locked",
        "train",
        "--resume of a run another process is writing (holds its lock)",
        "train --resume {ws}/runs/locked",
        ["in use by process", "wait for it to end"],
    ),
    _c(
        "train-resume-newer-format",
        "train",
        "--resume of a run directory of a newer format version",
        "train --resume {ws}/runs/newer_format",
        ["newer keras-ternary"],
    ),
    # --- train: data -------------------------------------------------------------------------
    _c(
        "train-data-missing",
        "train",
        "--data-dir does not exist",
        f"train {_TINY} --data-dir {{ws}}/nothere --out {{ws}}/o",
        ["CIFAR-10 was not found"],
    ),
    _c(
        "train-data-truncated",
        "train",
        "a CIFAR-10 batch file is truncated",
        f"train {_TINY} --data-dir {{ws}}/data_truncated --out {{ws}}/o",
        ["test_batch.bin", "not a positive multiple of the CIFAR-10 record size"],
    ),
    _c(
        "train-data-label",
        "train",
        "a CIFAR-10 record has label 200",
        f"train {_TINY} --data-dir {{ws}}/data_badlabel --out {{ws}}/o",
        ["label 200 out of range"],
    ),
    _c("train-data-source", "train", "--data foo", f"train {_TINY} --data foo", ["data.source"]),
    _c(
        "train-strategy-unknown",
        "train",
        "--strategy foo",
        f"train {_TINY} --strategy foo --out {{ws}}/o",
        ["--strategy", "invalid choice"],
    ),
    _c(
        "train-multiworker-no-tf-config",
        "train",
        "--strategy multiworker without TF_CONFIG",
        f"train {_TINY} --strategy multiworker --out {{ws}}/o",
        ["strategy multiworker needs the TF_CONFIG environment variable"],
    ),
    # --- sweep --------------------------------------------------------------------------------
    _c(
        "sweep-missing",
        "sweep",
        "sweep file does not exist",
        "sweep {ws}/nothere.yaml",
        ["nothere.yaml not found"],
    ),
    _c(
        "sweep-resources-without-ray",
        "sweep",
        "--cpus-per-run without --ray",
        "sweep {ws}/cfg/sweep_ok.yaml --cpus-per-run 2",
        ["--gpus-per-run and --cpus-per-run need --ray"],
    ),
    _c(
        "sweep-not-sweep",
        "sweep",
        "a run config instead of a sweep",
        "sweep {ws}/cfg/epochs0.yaml",
        ["is not a sweep file"],
    ),
    _c(
        "sweep-binary",
        "sweep",
        "sweep file is not UTF-8 text",
        "sweep {ws}/cfg/binary.yaml",
        ["cannot read config"],
    ),
    _c(
        "sweep-unknown-key",
        "sweep",
        "unknown sweep key",
        "sweep {ws}/cfg/sweep_unknown.yaml",
        ["unknown sweep key"],
    ),
    _c(
        "sweep-invalid-run",
        "sweep",
        "one grid point is invalid (epochs: 0)",
        "sweep {ws}/cfg/sweep_bad_run.yaml --out-root {ws}/sweeps",
        ["run epochs=0", "invalid value for epochs"],
    ),
    _c(
        "sweep-only",
        "sweep",
        "--only matches no run",
        "sweep {ws}/cfg/sweep_ok.yaml --out-root {ws}/sweeps --only zzz",
        ["no run of sweep"],
    ),
    _c(
        "sweep-run-data-missing",
        "sweep",
        "a run's data directory does not exist",
        "sweep {ws}/cfg/sweep_ok.yaml --out-root {ws}/sweeps --data-dir {ws}/nothere",
        ["CIFAR-10 was not found"],
        status=1,
    ),
    _c(
        "sweep-name-dotdot",
        "sweep",
        "sweep: ../x (runs outside --out-root)",
        "sweep {ws}/cfg/sweep_dotdot.yaml --out-root {ws}/sweeps",
        ["sweep name '../x' is not a plain file name"],
    ),
    _c(
        "sweep-name-absolute",
        "sweep",
        "sweep: /tmp/x (an absolute path)",
        "sweep {ws}/cfg/sweep_abs.yaml --out-root {ws}/sweeps",
        ["sweep name '/tmp/x' is not a plain file name"],
    ),
    _c(
        "sweep-run-name-dot",
        "sweep",
        "a run named . (nested in another run)",
        "sweep {ws}/cfg/sweep_dot_run.yaml --out-root {ws}/sweeps",
        ["run .:", "not a plain file name"],
    ),
    # --- report -------------------------------------------------------------------------------
    _c(
        "report-missing",
        "report",
        "runs directory does not exist",
        "report {ws}/nothere --out {ws}/rep",
        ["{ws}/nothere is not a directory"],
    ),
    _c(
        "report-no-runs",
        "report",
        "no finished run below the directory",
        "report {ws}/cfg --out {ws}/rep",
        ["no finished run directories"],
    ),
    _c(
        "report-history-garbage",
        "report",
        "a finished run's history.csv is corrupt",
        "report {ws}/reports/history_garbage --out {ws}/rep",
        ["history.csv"],
    ),
    _c(
        "report-config-binary",
        "report",
        "a run's config.yaml is not UTF-8 text",
        "report {ws}/reports/config_binary --out {ws}/rep",
        ["config.yaml"],
    ),
    _c(
        "report-config-incomplete",
        "report",
        "a run's config.yaml is hand-written and lacks keys",
        "report {ws}/reports/config_incomplete --out {ws}/rep",
        ["config.yaml is not a complete run configuration: no epochs, paper_epochs"],
    ),
    _c(
        "report-out-file",
        "report",
        "--out is an existing file",
        "report {ws}/reports/ok --out {ws}/afile",
        ["{ws}/afile"],
    ),
    _c(
        "report-summary-list",
        "report",
        "a run's summary.json holds a list",
        "report {ws}/reports/summary_list --out {ws}/rep",
        ["summary.json does not hold a JSON object"],
    ),
    _c(
        "report-summary-corrupt",
        "report",
        "a run's summary.json is corrupt",
        "report {ws}/reports/summary_corrupt --out {ws}/rep",
        ["summary.json is unreadable or corrupt"],
        forbid=("no finished run",),
    ),
    _c(
        "report-history-dir",
        "report",
        "a run's history.csv is a directory",
        "report {ws}/reports/history_dir --out {ws}/rep",
        ["history.csv is a directory"],
    ),
    _c(
        "report-out-is-root",
        "report",
        "--out is the runs directory itself",
        "report {ws}/reports/ok --out {ws}/reports/ok",
        ["would destroy the input"],
    ),
    _c(
        "report-root-loop",
        "report",
        "runs directory is a symbolic link loop",
        "report {ws}/loop_a --out {ws}/rep",
        ["symbolic link loop"],
    ),
    # --- quickstart --------------------------------------------------------------------------
    _c(
        "quickstart-out-file",
        "quickstart",
        "--out is an existing file",
        "quickstart --out {ws}/afile",
        ["{ws}/afile"],
    ),
    _c(
        "quickstart-out-not-run",
        "quickstart",
        "--out is a non-empty non-run directory",
        "quickstart --out {ws}/notrun",
        ["is not empty and is not a run directory"],
    ),
    _c(
        "quickstart-epochs",
        "quickstart",
        "--epochs 0",
        "quickstart --epochs 0",
        ["expected a positive integer"],
    ),
    _c(
        "quickstart-out-project",
        "quickstart",
        "--out is a project folder holding a config.yaml (was deleted by rmtree)",
        "quickstart --out {ws}/project",
        ["is not empty and is not a run directory", "nothing in it is touched"],
    ),
    _c(
        "quickstart-out-other-run",
        "quickstart",
        "--out holds a run that quickstart did not create",
        "quickstart --out {ws}/runs/ok",
        ["quickstart did not create", "left alone"],
    ),
    # --- export -------------------------------------------------------------------------------
    _c(
        "export-missing",
        "export",
        "model file does not exist",
        "export {ws}/nothere.h5 --to packed --out {ws}/x.tkp",
        ["model file not found"],
    ),
    _c(
        "export-directory",
        "export",
        "model path is a directory",
        "export {ws}/cfg --to packed --out {ws}/x.tkp",
        ["cannot load model"],
    ),
    _c(
        "export-truncated",
        "export",
        "truncated .h5",
        "export {ws}/m/truncated.h5 --to packed --out {ws}/x.tkp",
        ["cannot load model", "truncated"],
    ),
    _c(
        "export-random",
        "export",
        "random bytes named .h5",
        "export {ws}/m/random.h5 --to packed --out {ws}/x.tkp",
        ["cannot load model"],
    ),
    _c(
        "export-random-keras",
        "export",
        "random bytes named .keras",
        "export {ws}/m/random.keras --to packed --out {ws}/x.tkp",
        ["cannot load model"],
    ),
    _c(
        "export-keras-no-config",
        "export",
        ".keras zip without config.json",
        "export {ws}/m/noconfig.keras --to packed --out {ws}/x.tkp",
        ["cannot load model"],
    ),
    _c(
        "export-weights-only",
        "export",
        "weights-only .h5 (save_weights)",
        "export {ws}/m/weights_only.h5 --to packed --out {ws}/x.tkp",
        ["weights"],
        forbid=("object at 0x",),
    ),
    _c(
        "export-out-missing-dir",
        "export",
        "--out in a missing directory",
        "export {ws}/m/ternary.h5 --to packed --out {ws}/nothere/x.tkp",
        ["{ws}/nothere/x.tkp"],
        forbid=(".tmp",),
    ),
    _c(
        "export-out-dir",
        "export",
        "--out is a directory",
        "export {ws}/m/ternary.h5 --to packed --out {ws}/cfg",
        ["{ws}/cfg"],
        forbid=(".tmp",),
    ),
    _c(
        "export-representative",
        "export",
        "--representative foo",
        "export {ws}/m/ternary.h5 --to tflite --out {ws}/x.tflite --representative foo",
        ["neither a number, a directory, a data set"],
    ),
    _c(
        "export-representative-missing",
        "export",
        "--representative of a missing .npy",
        "export {ws}/m/ternary.h5 --to tflite --out {ws}/x.tflite --representative "
        "{ws}/nothere.npy",
        ["representative file not found"],
    ),
    _c(
        "export-representative-corrupt",
        "export",
        "--representative .npy is corrupt",
        "export {ws}/m/ternary.h5 --to tflite --out {ws}/x.tflite --representative "
        "{ws}/m/corrupt.npy",
        ["corrupt.npy"],
    ),
    _c(
        "export-representative-shape",
        "export",
        "--representative of the wrong shape",
        "export {ws}/m/ternary.h5 --to tflite --out {ws}/x.tflite --representative "
        "{ws}/m/wrong_shape.npy",
        ["representative data has shape"],
    ),
    _c(
        "export-out-is-input",
        "export",
        "--out is the model itself",
        "export {ws}/m/ternary.h5 --to packed --out {ws}/m/ternary.h5",
        ["--out {ws}/m/ternary.h5 is the model", "would destroy the input"],
    ),
    _c(
        "export-out-link-to-input",
        "export",
        "--out is a symbolic link to the model",
        "export {ws}/m/ternary.h5 --to packed --out {ws}/m/link.h5",
        ["is the model", "would destroy the input"],
    ),
    _c(
        "export-fifo",
        "export",
        "model path is a FIFO (would block)",
        "export {ws}/fifo.h5 --to packed --out {ws}/x.tkp",
        ["not a regular file"],
    ),
    _c(
        "export-dev-zero",
        "export",
        "/dev/zero named .keras (endless)",
        "export {ws}/m/zero.keras --to packed --out {ws}/x.tkp",
        ["not a regular file"],
    ),
    _c(
        "export-symlink-loop",
        "export",
        "model path is a symbolic link loop",
        "export {ws}/loop_a --to packed --out {ws}/x.tkp",
        ["symbolic link loop"],
    ),
    _c(
        "export-lambda",
        "export",
        ".h5 model with a Lambda layer (code), no --unsafe-load",
        "export {ws}/m/lambda.h5 --to packed --out {ws}/x.tkp",
        ["holds Python code (Lambda layer 'evil')", "--unsafe-load"],
    ),
    _c(
        "export-representative-fifo",
        "export",
        "--representative .npy is a FIFO",
        "export {ws}/m/ternary.h5 --to tflite --out {ws}/x.tflite --representative {ws}/fifo.npy",
        ["not a regular file"],
    ),
    _c(
        "export-import-missing",
        "export",
        "--import names a module that does not exist",
        "export {ws}/m/ternary.h5 --to packed --out {ws}/x.tkp --import no_such_module_kt",
        ["--import no_such_module_kt", "No module named 'no_such_module_kt'"],
    ),
    _c(
        "export-import-raises",
        "export",
        "--import names a module that raises while importing",
        "export {ws}/m/ternary.h5 --to packed --out {ws}/x.tkp "
        "--import tests.custom_objects.broken",
        ["--import tests.custom_objects.broken", "RuntimeError: this module refuses"],
    ),
    # --- hw_sim.profile ---------------------------------------------------------------------
    _c(
        "hw-missing",
        "hw_sim.profile",
        "model file does not exist",
        "{ws}/nothere.h5",
        ["model file not found"],
    ),
    _c(
        "hw-directory",
        "hw_sim.profile",
        "model path is a directory",
        "{ws}/cfg",
        ["expected a model file, got a directory"],
    ),
    _c("hw-truncated", "hw_sim.profile", "truncated .h5", "{ws}/m/truncated.h5", ["truncated"]),
    _c(
        "hw-random",
        "hw_sim.profile",
        "random bytes named .h5",
        "{ws}/m/random.h5",
        ["not a valid HDF5 file"],
    ),
    _c("hw-empty", "hw_sim.profile", "empty .h5", "{ws}/m/empty.h5", ["not a valid HDF5 file"]),
    _c(
        "hw-weights-only",
        "hw_sim.profile",
        "weights-only .h5 (save_weights)",
        "{ws}/m/weights_only.h5",
        ["holds no model (weights only?)"],
    ),
    _c(
        "hw-random-keras",
        "hw_sim.profile",
        "random bytes named .keras",
        "{ws}/m/random.keras",
        ["not a valid .keras archive"],
    ),
    _c(
        "hw-keras-no-config",
        "hw_sim.profile",
        ".keras zip without config.json",
        "{ws}/m/noconfig.keras",
        ["holds no model config"],
    ),
    _c(
        "hw-suffix",
        "hw_sim.profile",
        "unknown file suffix",
        "{ws}/m/model.txt",
        ["no loader for 'model.txt'"],
    ),
    _c(
        "hw-float-model",
        "hw_sim.profile",
        "a float Keras model (no quantized layer)",
        "{ws}/m/float.h5",
        ["has no quantized layer"],
    ),
    _c(
        "hw-import-missing",
        "hw_sim.profile",
        "--import names a module that does not exist",
        "{ws}/m/ternary.h5 --import no_such_module_kt",
        ["--import no_such_module_kt", "No module named 'no_such_module_kt'"],
    ),
    _c(
        "hw-import-raises",
        "hw_sim.profile",
        "--import names a module that raises while importing",
        "{ws}/m/ternary.h5 --import tests.custom_objects.broken",
        ["--import tests.custom_objects.broken", "RuntimeError: this module refuses"],
    ),
    _c(
        "hw-tech-missing",
        "hw_sim.profile",
        "--tech file does not exist",
        "{ws}/m/ternary.h5 --tech {ws}/nothere.yaml",
        ["technology file not found"],
    ),
    _c(
        "hw-tech-binary",
        "hw_sim.profile",
        "--tech file not UTF-8",
        "{ws}/m/ternary.h5 --tech {ws}/cfg/binary.yaml",
        ["cannot parse technology file"],
    ),
    _c(
        "hw-tech-syntax",
        "hw_sim.profile",
        "--tech YAML syntax error",
        "{ws}/m/ternary.h5 --tech {ws}/cfg/syntax.yaml",
        ["cannot parse technology file"],
    ),
    _c(
        "hw-tech-unknown",
        "hw_sim.profile",
        "--tech unknown key",
        "{ws}/m/ternary.h5 --tech {ws}/cfg/unknown.yaml",
        ["unknown key 'foo'"],
    ),
    _c(
        "hw-tech-negative",
        "hw_sim.profile",
        "--tech negative energy",
        "{ws}/m/ternary.h5 --tech {ws}/cfg/tech_negative.yaml",
        ["must be >= 0"],
    ),
    _c(
        "hw-out-missing-dir",
        "hw_sim.profile",
        "--out in a missing directory",
        "{ws}/m/ternary.h5 --out {ws}/nothere/r.txt",
        ["directory does not exist"],
    ),
    _c(
        "hw-out-dir",
        "hw_sim.profile",
        "--out is a directory",
        "{ws}/m/ternary.h5 --out {ws}/cfg",
        ["cannot write {ws}/cfg"],
    ),
    _c(
        "hw-plot-suffix",
        "hw_sim.profile",
        "--plot not .png",
        "{ws}/m/ternary.h5 --plot x.pdf",
        ["--plot needs a .png file name"],
    ),
    _c(
        "hw-plot-missing-dir",
        "hw_sim.profile",
        "--plot in a missing directory",
        "{ws}/m/ternary.h5 --plot {ws}/nothere/e.png",
        ["{ws}/nothere/e.png"],
    ),
    _c(
        "hw-format",
        "hw_sim.profile",
        "--format xml",
        "{ws}/m/ternary.h5 --format xml",
        ["invalid choice: 'xml'"],
    ),
    _c(
        "hw-out-is-input",
        "hw_sim.profile",
        "--out is the model itself",
        "{ws}/m/ternary.h5 --out {ws}/m/ternary.h5",
        ["is the model", "would destroy the input"],
    ),
    _c(
        "hw-fifo-h5",
        "hw_sim.profile",
        "model path is a FIFO named .h5",
        "{ws}/fifo.h5",
        ["not a regular file"],
    ),
    _c(
        "hw-fifo-tflite",
        "hw_sim.profile",
        "model path is a FIFO named .tflite",
        "{ws}/fifo.tflite",
        ["not a regular file"],
    ),
    _c(
        "hw-dev-zero-keras",
        "hw_sim.profile",
        "/dev/zero named .keras",
        "{ws}/m/zero.keras",
        ["not a regular file"],
    ),
    _c(
        "hw-dev-zero-tflite",
        "hw_sim.profile",
        "/dev/zero named .tflite",
        "{ws}/m/zero.tflite",
        ["not a regular file"],
    ),
    _c(
        "hw-inputs-fifo",
        "hw_sim.profile",
        "--inputs is a FIFO",
        "{ws}/m/ternary.h5 --emulate 2 --inputs {ws}/fifo.npz",
        ["--inputs file", "not a regular file"],
    ),
    _c(
        "hw-tech-fifo",
        "hw_sim.profile",
        "--tech is a FIFO",
        "{ws}/m/ternary.h5 --tech {ws}/fifo.yaml",
        ["technology file", "not a regular file"],
    ),
    _c(
        "hw-tech-alias-bomb",
        "hw_sim.profile",
        "--tech YAML alias bomb",
        "{ws}/m/ternary.h5 --tech {ws}/cfg/bomb.yaml",
        ["technology file", "YAML aliases"],
    ),
    _c(
        "hw-lambda",
        "hw_sim.profile",
        ".h5 model with a Lambda layer (code), no --unsafe-load",
        "{ws}/m/lambda.h5",
        ["holds Python code (Lambda layer 'evil')", "--unsafe-load"],
    ),
)


# --------------------------------------------------------------------------- workspace
TINY_CONFIG = """\
name: tiny
epochs: 2
paper_epochs: 2
batch_size: 16
tensorboard: false
data: {{source: cifar10_dir, dir: {data}, augment: false}}
model: {{quantizer: ternary, inflation: 1, blocks_per_stage: 1}}
ternary: {{regime: linear, delta0: 0.1, multiplier: 1.0, delta_max: 0.9}}
optimizer: {{lr_values: [0.005, 0.001], lr_boundaries: [1]}}
"""


def write_cifar_dir(folder: Path, n_per_file: int = 8, seed: int = 0) -> kdata.ArrayData:
    """A CIFAR-10 binary directory (5 training files + test file) of SHAPES-10 images."""
    folder.mkdir(parents=True, exist_ok=True)
    d = kdata.generate_shapes10(5 * n_per_file, 2 * n_per_file, seed=seed)
    for i in range(5):
        part = slice(i * n_per_file, (i + 1) * n_per_file)
        kdata.write_cifar10_binary(
            folder / f"data_batch_{i + 1}.bin", d.x_train[part], d.y_train[part]
        )
    kdata.write_cifar10_binary(folder / "test_batch.bin", d.x_test, d.y_test)
    return d


def lambda_model(path: Path) -> None:
    """Save an .h5 model with a Lambda layer named ``evil`` (code run on load) at ``path``."""
    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Lambda(lambda t: t * 2.0, name="evil")(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    tf.keras.Model(inputs, tf.keras.layers.Dense(4)(x)).save(path)


def _float_model() -> tf.keras.Model:
    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Conv2D(4, 3)(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(4)(x))


#: Lock file descriptors held for the module's tests (the "other process" of a locked run).
_HELD_FDS: list[int] = []


def _make_run_dirs(ws: Path) -> None:
    """Partial run directories of the tiny config, intact and broken in various ways."""
    data = kdata.load_cifar10_binary(ws / "data")
    state = {"epochs_done": 1, "best_val_accuracy": 0.1, "best_epoch": 1, "wall_time_s": 1.0}
    base = ws / "runs" / "ok"
    config = load_config(ws / "tiny.yaml", [f"out_dir={base}"])
    model = training.build_model(config, data)
    base.mkdir(parents=True)
    rundir.atomic_write_text(base / rundir.CONFIG_FILE, dump_yaml(config))
    run_callbacks.atomic_save_model(model, base / rundir.LAST_CKPT, True, state=state)
    row = {k: 0.5 for k in rundir.HISTORY_FIELDS} | {
        "epoch": 1,
        "paper_epoch": config.time_scale,
        "lr": config.optimizer.lr_values[0],
        "delta": training.make_delta_growth(config).delta_for(0),
    }
    rundir.atomic_write_text(base / rundir.HISTORY_FILE, rundir.format_history([row]))

    def variant(name: str, mutate: Callable[[Path], None]) -> None:
        target = ws / "runs" / name
        shutil.copytree(base, target)
        cfg = (target / rundir.CONFIG_FILE).read_text().replace(str(base), str(target))
        (target / rundir.CONFIG_FILE).write_text(cfg)
        mutate(target)

    last = rundir.LAST_CKPT
    variant("cfg_binary", lambda d: (d / "config.yaml").write_bytes(b"\xff\xfe\x00name: x"))
    variant("ckpt_truncated", lambda d: os.truncate(d / last, 4000))
    variant("ckpt_float", lambda d: shutil.copy(ws / "m" / "float.h5", d / last))

    def no_optimizer(d: Path) -> None:
        (d / last).unlink()
        run_callbacks.atomic_save_model(model, d / last, False, state=state)

    variant("ckpt_no_optimizer", no_optimizer)

    def garbage_state(d: Path) -> None:
        with h5py.File(d / last, "a") as f:
            f.attrs[rundir.STATE_ATTR] = json.dumps({"foo": 1})

    variant("state_garbage", garbage_state)
    variant("history_garbage", lambda d: (d / "history.csv").write_text("abc\n1\n"))

    # issue #19: what a resume must refuse before touching anything
    history = (base / rundir.HISTORY_FILE).read_text()
    header, first = history.splitlines()[:2]
    variant("no_last", lambda d: (d / last).unlink())

    def edit_config(old: str, new: str) -> Callable[[Path], None]:
        def mutate(d: Path) -> None:
            text = (d / rundir.CONFIG_FILE).read_text()
            assert old in text, (old, text)
            (d / rundir.CONFIG_FILE).write_text(text.replace(old, new, 1))

        return mutate

    def seed_edited(d: Path) -> None:
        stored = rundir.load_run_config(d)
        run_callbacks.atomic_save_model(
            model, d / last, True, state=state | {"config": rundir.run_identity(stored)}
        )
        edit_config("seed: 0", "seed: 1")(d)

    variant("seed_edited", seed_edited)
    variant("delta_edited", edit_config("delta0: 0.1", "delta0: 0.05"))
    variant("width_edited", edit_config("inflation: 1", "inflation: 2"))

    def binary_ckpt(d: Path) -> None:
        binary_config = load_config(ws / "tiny.yaml", ["model.quantizer=binary"])
        binary = training.build_model(binary_config, data)
        run_callbacks.atomic_save_model(binary, d / last, True, state=state)

    variant("ckpt_binary", binary_ckpt)
    variant("ckpt_lambda", lambda d: shutil.copy(ws / "m" / "lambda.h5", d / last))
    variant("history_gap", lambda d: (d / "history.csv").write_text(
        f"{header}\n{first}\n3{first[1:]}\n"
    ))  # fmt: skip
    variant("history_short", lambda d: (d / "history.csv").write_text(header + "\n"))
    variant("history_cut", lambda d: (d / "history.csv").write_text(
        header + "\n" + first[: first.index(",", 4)] + "\n"
    ))  # fmt: skip

    def history_dir(d: Path) -> None:
        (d / "history.csv").unlink()
        (d / "history.csv").mkdir()

    variant("history_dir", history_dir)

    def locked(d: Path) -> None:  # another process's lock: an open file description of ours
        import fcntl

        fd = os.open(d / rundir.LOCK_FILE, os.O_RDWR | os.O_CREAT)
        os.write(fd, b"4242\n")
        fcntl.flock(fd, fcntl.LOCK_EX)
        _HELD_FDS.append(fd)

    variant("locked", locked)
    variant("newer_format", lambda d: (d / rundir.MARKER_FILE).write_text(
        json.dumps({"format": rundir.FORMAT_NAME, "version": 99})
    ))  # fmt: skip

    # finished-looking runs for `report`
    for name, mutate in (
        ("ok", lambda d: None),
        ("history_garbage", lambda d: (d / "history.csv").write_text("epoch,loss\n1,x\n")),
        ("config_binary", lambda d: (d / "config.yaml").write_bytes(b"\xff\xfe\x00")),
        ("config_incomplete", lambda d: (d / "config.yaml").write_text("model: {inflation: 1}\n")),
        ("summary_list", lambda d: (d / "summary.json").write_text("[1, 2]")),
        ("summary_corrupt", lambda d: (d / "summary.json").write_text('{"best_val_acc')),
        ("history_dir", history_dir),
    ):
        target = ws / "reports" / name / name
        shutil.copytree(base, target)
        (target / rundir.SUMMARY_FILE).write_text(json.dumps({"best_val_accuracy": 0.1}))
        mutate(target)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace with every bad (and a few good) inputs the cases refer to."""
    ws = tmp_path_factory.mktemp("cli_ws")
    cfg = ws / "cfg"
    cfg.mkdir()
    files = {
        "binary.yaml": b"\xff\xfe\x00garbage",
        "syntax.yaml": b"epochs: [1\n",
        "syntax.toml": b"epochs = [",
        "list.yaml": b"- 1\n- 2\n",
        "unknown.yaml": b"foo: 1\n",
        "extends_missing.yaml": b"extends: nothere.yaml\n",
        "self.yaml": b"extends: self.yaml\n",
        "epochs0.yaml": b"epochs: 0\n",
        "tech_negative.yaml": b"energy_pj: {int8_add: -1}\n",
        "sweep_unknown.yaml": b"base: {}\nfoo: 1\n",
        "sweep_bad_run.yaml": b"base: ../tiny.yaml\ngrid: {epochs: [1, 0]}\n",
        "sweep_ok.yaml": b"base: ../tiny.yaml\ngrid: {seed: [0]}\n",
    }
    for name, content in files.items():
        (cfg / name).write_bytes(content)
    (ws / "afile").write_text("a regular file\n")
    (cfg / "empty.yaml").write_bytes(b"")
    (cfg / "huge.yaml").write_text("snapshot_epochs: [" + "1, " * 400_000 + "1]\n")
    bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i, name in enumerate("bcdefgh"):
        prev = "abcdefgh"[i]
        bomb.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    (cfg / "bomb.yaml").write_text("\n".join(bomb) + "\nname: *h\n")
    for name, text in (
        ("sweep_dotdot.yaml", "sweep: ../x\nbase: ../tiny.yaml\n"),
        ("sweep_abs.yaml", "sweep: /tmp/x\nbase: ../tiny.yaml\n"),
        ("sweep_dot_run.yaml", "base: ../tiny.yaml\nruns: [{name: .}]\n"),
    ):
        (cfg / name).write_text(text)
    for name in ("fifo.h5", "fifo.yaml", "fifo.tflite", "fifo.npz", "fifo.npy"):
        os.mkfifo(ws / name)
    os.symlink(ws / "loop_b", ws / "loop_a")
    os.symlink(ws / "loop_a", ws / "loop_b")
    project = ws / "project"  # `quickstart --out .` in a project folder deleted it (#19)
    (project / "src").mkdir(parents=True)
    (project / "README.md").write_text("my project\n")
    (project / "src" / "main.py").write_text("print('hello')\n")
    (ws / "notrun").mkdir()
    (ws / "notrun" / "keep.txt").write_text("user data\n")

    write_cifar_dir(ws / "data")
    for name, mutate in (
        ("data_truncated", lambda d: os.truncate(d / "test_batch.bin", 3073 * 3 + 7)),
        ("data_badlabel", lambda d: _set_first_label(d / "data_batch_2.bin", 200)),
    ):
        shutil.copytree(ws / "data", ws / name)
        mutate(ws / name)
    (ws / "tiny.yaml").write_text(TINY_CONFIG.format(data=ws / "data"))

    m = ws / "m"
    m.mkdir()
    tiny_ternary_model().save(m / "ternary.h5")
    (m / "ternary.h5").chmod(0o644)
    float_model = _float_model()
    float_model.save(m / "float.h5")
    float_model.save_weights(m / "weights_only.h5")
    good = (m / "ternary.h5").read_bytes()
    (m / "truncated.h5").write_bytes(good[: len(good) // 3])
    rng = np.random.default_rng(0)
    (m / "random.h5").write_bytes(rng.bytes(4096))
    (m / "random.keras").write_bytes(rng.bytes(4096))
    (m / "empty.h5").write_bytes(b"")
    (m / "model.txt").write_text("not a model\n")
    with zipfile.ZipFile(m / "noconfig.keras", "w") as archive:
        archive.writestr("metadata.json", "{}")
    (m / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    os.symlink(m / "ternary.h5", m / "link.h5")
    os.symlink("/dev/zero", m / "zero.keras")
    os.symlink("/dev/zero", m / "zero.tflite")
    lambda_model(m / "lambda.h5")
    np.save(m / "wrong_shape.npy", np.zeros((2, 4, 4, 3), np.float32))

    _make_run_dirs(ws)
    (ws / "project" / "config.yaml").write_text((ws / "tiny.yaml").read_text())
    tf.keras.backend.clear_session()
    return ws


def _set_first_label(path: Path, label: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[0] = label
    path.write_bytes(bytes(raw))


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path below ``root`` with its type, size, mode and modification time."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        kind = "d" if stat.S_ISDIR(st.st_mode) else "f"
        out[str(path.relative_to(root))] = (
            kind,
            0 if kind == "d" else st.st_size,
            st.st_mode,
            0 if kind == "d" else st.st_mtime_ns,
        )
    return out


# --------------------------------------------------------------------------- running
def export_registered() -> bool:
    """Whether ``python -m keras_ternary export`` exists."""
    return "export" in kcli.SUBCOMMANDS


def cli_main(cli: str) -> Callable[[list[str]], int]:
    """The ``main(argv)`` a user reaches for ``cli`` (see :class:`CliCase`)."""
    if cli == "hw_sim.profile":
        return importlib.import_module("hw_sim.profile").main
    return kcli.main


def run_main(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """Exit status of ``main(argv)``; an escaping exception fails the test (a traceback)."""
    try:
        return main(argv)
    except SystemExit as exc:  # argparse
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - this is exactly what must not happen
        pytest.fail(
            "an exception escapes the CLI (traceback for the user):\n" + traceback.format_exc()
        )


def _param(case: CliCase):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CLI_CASES])
def test_cli_bad_input(case: CliCase, ws: Path, capsys, monkeypatch):
    monkeypatch.chdir(ws)  # default output locations (runs/, report/) land in the workspace
    argv = [a.replace("{ws}", str(ws)) for a in case.argv]
    before = snapshot(ws)
    capsys.readouterr()
    status = run_main(cli_main(case.cli), argv)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert status == case.status, f"exit status {status}, not {case.status}\nstderr: {err}"
    assert "Traceback" not in out + err, out + err
    assert len(lines) == 1, f"expected one error line on stderr, got:\n{err}\nstdout:\n{out}"
    message = lines[0]
    assert "error:" in message
    for fragment in case.fragments:
        fragment = fragment.replace("{ws}", str(ws))
        assert fragment in message, f"{fragment!r} not in {message!r}"
    for text in case.forbid:
        assert text not in message, f"{text!r} in {message!r}"
    after = snapshot(ws)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"the failed command changed the workspace: {changed}"


def test_case_ids_are_unique():
    ids = [c.id for c in CLI_CASES]
    assert len(ids) == len(set(ids))


def test_export_subcommand_registered():
    assert export_registered()


# --------------------------------------------------------------------------- end to end
NATIVE_LOG = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} |\S+\.cc:\d+\])")


def _stderr_lines(text: str) -> list[str]:
    """stderr without TensorFlow's native start-up log lines (C++, not the CLI's output)."""
    return [ln for ln in text.splitlines() if ln.strip() and not NATIVE_LOG.match(ln)]


def test_cli_error_end_to_end(ws: Path):
    """``python -m keras_ternary`` in a real process: exit status 2, one line, no traceback."""
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "PYTHONPATH": str(ROOT)}
    config = str(ws / "cfg" / "unknown.yaml")
    command = [sys.executable, "-m", "keras_ternary", "train", "--config", config]
    before = snapshot(ws)
    proc = subprocess.run(
        [*command, "--out", str(ws / "o")],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = _stderr_lines(proc.stderr)
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: unknown key foo"), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert snapshot(ws) == before


# --------------------------------------------------------------------------- output files
def _expected_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def test_training_outputs_respect_umask(tmp_path):
    rundir.atomic_write_text(tmp_path / "history.csv", "epoch\n")
    run_callbacks.atomic_save_model(tiny_ternary_model(), tmp_path / "model.h5", False)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"history.csv": _expected_mode(), "model.h5": _expected_mode()}


def test_export_output_respects_umask(ws: Path, tmp_path, capsys):
    out = tmp_path / "model.tkp"
    status = run_main(
        cli_main("export"),
        ["export", str(ws / "m" / "ternary.h5"), "--to", "packed", "--out", str(out)],
    )
    assert status == 0, capsys.readouterr().err
    assert stat.S_IMODE(out.stat().st_mode) == _expected_mode()


def test_hw_sim_output_respects_umask(ws: Path, tmp_path, capsys):
    out = tmp_path / "profile.json"
    status = run_main(
        cli_main("hw_sim.profile"),
        [str(ws / "m" / "ternary.h5"), "--format", "json", "--out", str(out)],
    )
    assert status == 0, capsys.readouterr().err
    assert stat.S_IMODE(out.stat().st_mode) == _expected_mode()
