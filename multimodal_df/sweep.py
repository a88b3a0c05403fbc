"""Hyper-parameter sweeps: Optuna trials, each a normal training run, ranked by validation AUC.

    python -m multimodal_df.sweep sweep.yaml [--workers N] [--manifest CSV] [--out DIR]

The sweep file (see ``multimodal_df/config/sweeps/tiny_grid.yaml``)::

    name: tiny_grid               # the Optuna study name
    base: tiny                    # a preset name or a config YAML
    manifest: data.csv            # what `train --manifest` takes (relative paths: from the working directory)
    stages: [vision, audio, fusion]
    objective: fusion             # whose validation AUC is maximised (default: the last stage)
    sampler: grid                 # grid | random | tpe
    n_trials: 2                   # grid: default the size of the grid
    overrides: {train.epochs: 2}  # fixed for every trial
    space:
      train.lr: [0.001, 0.003]                     # a list: grid values (categorical for random / tpe)
      train.weight_decay: {low: 1.0e-4, high: 0.1, log: true}   # random / tpe only
      fusion.hidden: {choices: [8, 16]}

Trials are run directories ``OUT/trials/trial-NNNN`` (``OUT`` default ``runs/sweeps/NAME``) trained by
:func:`multimodal_df.training.run.run_training`; the study lives in ``OUT/study.db`` (SQLite) unless
``storage:`` names another Optuna storage, so a sweep that is run again continues it (a finished grid
runs nothing) and ``--workers N`` processes share it. Objective: the validation AUC training reports
(a branch's ``val_auc``; fusion's out-of-fold AUC of the method it kept). At the end ``OUT/runs.csv``,
``OUT/runs.md`` (best first) and ``OUT/runs.png``.

Exit status: 0 every trial finished, 1 some trials failed (the others are reported), 2 a bad sweep file,
3 the process itself failed.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError, ExitCode, run_command

Sampler = Literal["grid", "random", "tpe"]
BRANCH_STAGES = ("vision", "audio", "fusion")


@dataclass
class SweepSpec:
    """A sweep file, checked (unknown keys and wrong types are rejected like config files)."""

    name: str
    base: str
    space: dict[str, Any]
    manifest: str | None = None
    stages: list[str] = field(default_factory=lambda: list(BRANCH_STAGES))
    objective: str | None = None
    """``vision``, ``audio`` or ``fusion``: whose validation AUC is maximised; default the last of ``stages``."""
    sampler: Sampler = "grid"
    n_trials: int | None = None
    seed: int = 0
    storage: str | None = None
    out: str | None = None
    cache_dir: str | None = None
    device: str = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def out_dir(self) -> Path:
        return Path(self.out or Path("runs") / "sweeps" / self.name)

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out_dir / 'study.db').resolve()}"

    @property
    def target(self) -> str:
        return self.objective or self.stages[-1]


def load_spec(path: str | Path, **replace: Any) -> SweepSpec:
    """Read and check a sweep file; ``replace`` overrides its top-level keys (None leaves them)."""
    import yaml

    from .config import from_dict, load_config

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"sweep file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top")
    data.update({k: v for k, v in replace.items() if v is not None})
    spec = from_dict(SweepSpec, data, where=p.name)
    bad = [s for s in spec.stages if s not in BRANCH_STAGES]
    if bad or not spec.stages:
        raise ConfigError(f"{p.name}.stages: {bad or 'empty'}; choose from {list(BRANCH_STAGES)}")
    if spec.target not in spec.stages:
        raise ConfigError(f"{p.name}.objective: {spec.target!r} is not one of the stages {spec.stages}")
    if not spec.space:
        raise ConfigError(f"{p.name}.space: nothing to search")
    for key, dist in spec.space.items():
        _check_dimension(f"{p.name}.space.{key}", dist, spec.sampler)
    # Every value of a grid (and the bounds of a range) must make a valid config: fail now, not in trial 7.
    for key, dist in spec.space.items():
        values = dist if isinstance(dist, list) else dist.get("choices", [dist.get("low"), dist.get("high")])
        for v in values:
            load_config(spec.base, {**spec.overrides, key: v})
    return spec


def _check_dimension(where: str, dist: Any, sampler: str) -> None:
    if isinstance(dist, list):
        if not dist:
            raise ConfigError(f"{where}: an empty list")
        if any(isinstance(v, (list, dict)) for v in dist):
            raise ConfigError(f"{where}: values must be numbers, strings, booleans or null")
        return
    if not isinstance(dist, dict):
        raise ConfigError(f"{where}: a list of values, {{choices: [...]}} or {{low, high[, log, step]}}")
    if "choices" in dist:
        _check_dimension(where, dist["choices"], sampler)
        return
    if sampler == "grid":
        raise ConfigError(f"{where}: a grid needs a list of values, not a range")
    unknown = set(dist) - {"low", "high", "log", "step", "int"}
    if unknown or not {"low", "high"} <= set(dist):
        raise ConfigError(f"{where}: a range is {{low, high[, log, step, int]}} (got {sorted(dist)})")
    if not all(isinstance(dist[k], (int, float)) and not isinstance(dist[k], bool) for k in ("low", "high")):
        raise ConfigError(f"{where}: low and high must be numbers")
    if dist["low"] > dist["high"] or (dist.get("log") and dist["low"] <= 0):
        raise ConfigError(f"{where}: need 0 < low <= high for a log range, low <= high otherwise")


def grid_of(spec: SweepSpec) -> dict[str, list[Any]]:
    """The search space as value lists (grid sampler)."""
    return {k: list(d if isinstance(d, list) else d["choices"]) for k, d in spec.space.items()}


def n_trials_of(spec: SweepSpec) -> int:
    """Trials the sweep runs in all: ``n_trials``, or the size of the grid."""
    if spec.n_trials is not None:
        return spec.n_trials
    if spec.sampler != "grid":
        raise ConfigError(f"n_trials is required with sampler {spec.sampler}")
    return math.prod(len(v) for v in grid_of(spec).values())


def suggest(trial: Any, spec: SweepSpec) -> dict[str, Any]:
    """Dotted config key -> this trial's value."""
    out = {}
    for key, d in spec.space.items():
        if isinstance(d, list) or "choices" in d:
            out[key] = trial.suggest_categorical(key, d if isinstance(d, list) else d["choices"])
        elif d.get("int") or (isinstance(d["low"], int) and isinstance(d["high"], int) and not d.get("log")):
            out[key] = trial.suggest_int(key, int(d["low"]), int(d["high"]), step=int(d.get("step", 1)))
        else:
            out[key] = trial.suggest_float(
                key, float(d["low"]), float(d["high"]), log=bool(d.get("log")), step=d.get("step")
            )
    return out


def open_study(spec: SweepSpec, load_only: bool = False) -> Any:
    """The sweep's Optuna study (created on first use). Heartbeats mark the trials of a killed worker as
    failed once it has been silent for 2 minutes, and a failed-by-heartbeat trial is run again."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(
        spec.storage_url,
        heartbeat_interval=30,
        grace_period=120,
        failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=1),
    )
    if load_only:
        return optuna.load_study(study_name=spec.name, storage=storage)
    if spec.sampler == "grid":
        sampler: Any = optuna.samplers.GridSampler(grid_of(spec), seed=spec.seed)
    elif spec.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=spec.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=spec.seed)
    return optuna.create_study(
        study_name=spec.name, storage=storage, sampler=sampler, direction="maximize", load_if_exists=True
    )


def remaining_trials(study: Any, n_trials: int) -> int:
    """Trials still to start: the total less those finished, running or queued."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    # A trial failed by its heartbeat and queued again is one trial, not two.
    retried = {t.system_attrs.get("failed_trial") for t in trials} - {None}
    taken = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING
    return max(0, n_trials - sum(t.state in taken and t.number not in retried for t in trials))


def reported_auc(run_dir: Path, stage: str) -> dict[str, float]:
    """The validation AUC each trained stage reported in its checkpoint: ``{vision, audio, fusion}``."""
    from .pipeline.detector import Detector

    out: dict[str, float] = {}
    for name, sub in (("vision", "vision"), ("audio", "audio"), ("fusion", "detector")):
        if not (run_dir / sub / "config.json").is_file():
            continue
        det = Detector.load(run_dir / sub, "cpu")
        if name == "fusion":
            m = det.fusion_meta.metrics
            out[name] = float(m.get("methods", {}).get(m.get("method"), {}).get("oof_auc", math.nan))
        else:
            meta = det.vision_meta if name == "vision" else det.audio_meta
            out[name] = float(meta.metrics.get("val_auc", math.nan))
    return out


def run_trial(trial: Any, spec: SweepSpec) -> float:
    """One trial: a training run in ``OUT/trials/trial-NNNN``; returns the objective's validation AUC."""
    from .config import load_config
    from .training.run import run_training

    params = suggest(trial, spec)
    cfg = load_config(spec.base, {**spec.overrides, **params})
    cfg.train.progress = False
    run_dir = spec.out_dir / "trials" / f"trial-{trial.number:04d}"
    trial.set_user_attr("run_dir", str(run_dir))
    t0 = time.time()
    print(f"sweep {spec.name}: trial {trial.number} {params} -> {run_dir}", file=sys.stderr)
    run_training(cfg, spec.stages, spec.manifest, run_dir, spec.cache_dir or spec.out_dir / "cache", spec.device)
    aucs = reported_auc(run_dir, spec.target)
    trial.set_user_attr("seconds", round(time.time() - t0, 1))
    for k, v in aucs.items():
        trial.set_user_attr(f"{k}_auc", None if math.isnan(v) else v)
    return aucs.get(spec.target, math.nan)  # NaN (one class in validation) makes the trial fail


def work(spec: SweepSpec, threads: int | None = None) -> None:
    """One worker: run trials until the sweep has its ``n_trials`` (several workers may share the study)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    study = open_study(spec)
    from optuna.storages import fail_stale_trials

    fail_stale_trials(study)
    total = n_trials_of(spec)
    # One trial per optimize() call, counted afresh each time: workers sharing the study stop as soon as
    # every trial is taken, instead of each running its own quota past the end of a grid.
    while remaining_trials(study, total) > 0:
        study.optimize(lambda t: run_trial(t, spec), n_trials=1, catch=(Exception,))


def _work_in_process(spec: SweepSpec, threads: int) -> None:
    # The entry point of a --workers process (spawned: fresh interpreter, no inherited torch state).
    import warnings

    warnings.filterwarnings("ignore")
    work(spec, threads)


@dataclass
class SweepReport:
    """What a sweep has: one row per trial (best first) and where the table and plot are."""

    rows: list[dict[str, Any]]
    csv: Path
    md: Path
    png: Path
    failed: int


def write_report(spec: SweepSpec) -> SweepReport:
    """``runs.csv``, ``runs.md`` (trials by validation AUC, best first) and ``runs.png`` in the sweep's folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study = open_study(spec, load_only=True)
    keys = list(spec.space)
    rows = []
    for t in study.get_trials(deepcopy=False):
        value = t.value if t.value is not None and math.isfinite(t.value) else None
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "val_auc": value,
                **{k: t.params.get(k) for k in keys},
                **{f"{s}_auc": t.user_attrs.get(f"{s}_auc") for s in spec.stages},
                "seconds": t.user_attrs.get("seconds"),
                "run_dir": t.user_attrs.get("run_dir"),
            }
        )
    # Best first; trials without a value (failed, running) last, by number.
    rows.sort(key=lambda r: (r["val_auc"] is None, -(r["val_auc"] or 0.0), r["trial"]))
    out = spec.out_dir
    out.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0]) if rows else ["trial", "state", "val_auc", *keys]
    with open(out / "runs.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)

    def cell(v: Any, key: str = "") -> str:
        # AUCs to 4 decimals; parameters to 4 significant digits (a learning rate of 3e-5 is not 0.0000).
        if isinstance(v, float):
            return f"{v:.4f}" if key.endswith("auc") else f"{v:.4g}"
        return "" if v is None else str(v)

    lines = [
        f"# Sweep {spec.name}",
        "",
        f"Base config `{spec.base}`, stages {', '.join(spec.stages)}, sampler {spec.sampler}; objective: "
        f"{spec.target} validation AUC. {len(rows)} trials.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
        *("| " + " | ".join(cell(r[c], c) for c in cols) + " |" for r in rows),
    ]
    (out / "runs.md").write_text("\n".join(lines) + "\n")

    done = [r for r in rows if r["val_auc"] is not None]
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.4 * max(1, len(done))))
    labels = [f"#{r['trial']} " + ", ".join(f"{k.split('.')[-1]}={cell(r[k])}" for k in keys) for r in done]
    ax.barh(range(len(done)), [r["val_auc"] for r in done], color="tab:blue")
    ax.set_yticks(range(len(done)), labels, fontsize=8)
    ax.invert_yaxis()  # best at the top, as in the table
    lo = min([r["val_auc"] for r in done], default=0.5)
    ax.set_xlim(max(0.0, min(0.5, lo - 0.05)), 1.0)
    ax.set_xlabel(f"{spec.target} validation AUC")
    ax.set_title(f"sweep {spec.name}")
    fig.tight_layout()
    fig.savefig(out / "runs.png", dpi=100)
    plt.close(fig)
    return SweepReport(
        rows, out / "runs.csv", out / "runs.md", out / "runs.png", sum(r["state"] == "fail" for r in rows)
    )


def run_sweep(spec: SweepSpec, workers: int = 1) -> SweepReport:
    """Run (or continue) the sweep with ``workers`` processes sharing the study, then write the report."""
    import multiprocessing

    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    if spec.storage is None and workers > 1:
        print(
            "sweep: several workers on one SQLite file; fine on one machine, use a server database beyond",
            file=sys.stderr,
        )
    open_study(spec)  # created once here, so the workers do not race to create it
    if workers == 1:
        work(spec)
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_work_in_process, args=(spec, threads)) for _ in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode != 0 for p in procs):
            print(f"sweep: worker exit codes {[p.exitcode for p in procs]}", file=sys.stderr)
    return write_report(spec)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m multimodal_df.sweep", description="Search training settings; rank runs by validation AUC."
    )
    p.add_argument("sweep", help="sweep YAML (see multimodal_df/config/sweeps/)")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the study (default 1)")
    p.add_argument("--manifest", help="replaces the sweep file's manifest")
    p.add_argument("--out", help="replaces the sweep file's output folder")
    p.add_argument("--cache-dir", help="replaces the sweep file's prepared-data cache")
    p.add_argument("--device", help="replaces the sweep file's device (auto | cpu | cuda)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 every trial finished, 1 some trials failed, 2 a bad sweep file, 3 failure."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        import warnings

        warnings.filterwarnings("ignore")
        spec = load_spec(args.sweep, manifest=args.manifest, out=args.out, cache_dir=args.cache_dir, device=args.device)
        report = run_sweep(spec, args.workers)
        best = report.rows[0] if report.rows and report.rows[0]["val_auc"] is not None else None
        print(
            f"sweep {spec.name}: {len(report.rows)} trials, {report.failed} failed; "
            + (f"best trial {best['trial']} val AUC {best['val_auc']:.4f} ({best['run_dir']}); " if best else "")
            + f"table {report.md}, plot {report.png}",
            file=sys.stderr,
        )
        return ExitCode.INPUT_ERRORS if report.failed else ExitCode.OK

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
