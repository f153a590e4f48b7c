"""The `trls` command.

Thin: parse options, load params, call a stage function, turn user errors
into one clear line and exit code 2.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import typer

from trls_core.errors import TrlsError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="TRLS: spectrogram BYOL + TFRNN for EEG/ECG.")
data_app = typer.Typer(no_args_is_help=True, help="Data stages (what `dvc repro` runs).")
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"trls {version('trls')}")
        except PackageNotFoundError:  # running from a checkout that was never installed
            typer.echo("trls (not installed: pip install -e .)")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the installed trls version and exit"
    ),
) -> None:
    """TRLS: spectrogram BYOL + TFRNN for EEG/ECG."""


ParamsOpt = typer.Option(Path("params.yaml"), "--params", help="params.yaml to read")
ProfileOpt = typer.Option(None, "--profile", help="profile to merge (default: TRLS_PROFILE or params.yaml `profile`)")
RootOpt = typer.Option(Path("."), "--root", help="project root holding data/, models/, reports/")
SetOpt = typer.Option(
    None,
    "--set",
    help="override a setting after the profile: dotted.key=YAML value "
    "(repeatable; validated like params.yaml), e.g. --set pretrain.epochs=3",
)


def _guard(fn: Callable[[], object]) -> object:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    # every Prefect API call is an httpx INFO line: noise next to the progress users want to see
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return fn()
    except TrlsError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None


@app.command()
def params(params: Path = ParamsOpt, profile: str | None = ProfileOpt, sets: list[str] | None = SetOpt) -> None:
    """Print the resolved parameters (profile and --set merged) as JSON."""
    from trls_core.config import load_params

    p = _guard(lambda: load_params(params, profile, sets))
    typer.echo(json.dumps(p.model_dump(), indent=2))  # type: ignore[union-attr]


@app.command()
def pretrain(
    params: Path = ParamsOpt,
    profile: str | None = ProfileOpt,
    root: Path = RootOpt,
    seed: list[int] | None = typer.Option(None, "--seed", help="override pretrain.seeds (repeatable)"),
    epochs: int | None = typer.Option(None, "--epochs", help="override pretrain.epochs"),
    sets: list[str] | None = SetOpt,
) -> None:
    """BYOL pretraining of the encoder on the train split's spectrograms (resumes from checkpoints)."""
    from trls_core.config import load_params
    from trls_core.stages.pretrain import pretrain_all

    def go() -> None:
        extra = [f"pretrain.seeds={list(seed)}"] if seed else []
        extra += [f"pretrain.epochs={epochs}"] if epochs is not None else []  # validated: --epochs 0 is an error
        p = load_params(params, profile, [*(sets or []), *extra])
        for path in pretrain_all(root, p):
            typer.echo(f"encoder: {path}")

    _guard(go)


@app.command()
def evaluate(
    params: Path = ParamsOpt,
    profile: str | None = ProfileOpt,
    root: Path = RootOpt,
    task: str | None = typer.Option(
        None,
        "--task",
        help="override evaluate.task: a task of the dataset's meta.json "
        "(epilepsy: binary | five_set; cinc2017: af; sleepedf: stage; mitdb: aami)",
    ),
    sets: list[str] | None = SetOpt,
) -> None:
    """Linear probe, label-fraction fine-tuning and controls -> reports/<dataset>/."""
    from trls_core.config import load_params
    from trls_core.stages.evaluate import evaluate_all

    def go() -> None:
        extra = [f"evaluate.task={json.dumps(task)}"] if task else []  # validated like --set
        p = load_params(params, profile, [*(sets or []), *extra])
        out = evaluate_all(root, p)
        typer.echo(f"reports: {out}")

    _guard(go)


@app.command()
def floors(
    params: Path = ParamsOpt,
    profile: str | None = ProfileOpt,
    root: Path = RootOpt,
    sets: list[str] | None = SetOpt,
) -> None:
    """Floors on the evaluation's record splits (majority, RR-interval features + GBM).

    Writes reports/<dataset>/floors.json.
    """
    from trls_core.config import load_params
    from trls_core.stages.floors import floors as run_floors

    def go() -> None:
        typer.echo(f"floors: {run_floors(root, load_params(params, profile, sets))}")

    _guard(go)


def _stage(name: str, dataset: str, params: Path, root: Path) -> None:
    from trls_core.config import load_params

    def go() -> None:
        import importlib

        module = importlib.import_module(f"trls_core.stages.{name}")
        fn = {"fetch": "fetch", "parquet": "build_parquet", "spectrogram": "build_spectrograms"}[name]
        p = load_params(params)
        p.dataset(dataset)
        getattr(module, fn)(root, dataset, p)

    _guard(go)


@data_app.command("fetch")
def data_fetch(dataset: str, params: Path = ParamsOpt, root: Path = RootOpt) -> None:
    """Fetch raw files (official URL or TRLS_DATA_MIRROR) into data/raw/DATASET."""
    _stage("fetch", dataset, params, root)


@data_app.command("parquet")
def data_parquet(dataset: str, params: Path = ParamsOpt, root: Path = RootOpt) -> None:
    """Raw files -> data/parquet/DATASET/windows.parquet."""
    _stage("parquet", dataset, params, root)


@data_app.command("spectrogram")
def data_spectrogram(dataset: str, params: Path = ParamsOpt, root: Path = RootOpt) -> None:
    """Parquet -> data/spectrograms/DATASET/{train,val,test}.safetensors."""
    _stage("spectrogram", dataset, params, root)


@data_app.command("describe")
def data_describe(
    dataset: str,
    params: Path = ParamsOpt,
    root: Path = RootOpt,
    limit: int = typer.Option(20, "--limit", help="rejected records to list (all are in rejected.json)"),
    as_json: bool = typer.Option(False, "--json", help="print summary.json as is"),
) -> None:
    """Class counts per split, window counts, rejected records with reasons, Parquet digest."""
    from trls_core.config import load_params
    from trls_core.data.report import format_summary, load_summary
    from trls_core.paths import parquet_dir

    def go() -> None:
        load_params(params).dataset(dataset)
        summary, rejected = load_summary(parquet_dir(root, dataset))
        typer.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary, rejected, limit))

    _guard(go)


DatasetOpt = typer.Option(
    None, "--dataset", "-d", help="the dataset to train on (default: the profile's pretrain.dataset; must match it)"
)
ForceOpt = typer.Option(
    False,
    "--force",
    help="a real retrain: train every seed from scratch, rerun every evaluation unit, "
    "register even when the weights equal the latest version's",
)
ModelNameOpt = typer.Option(None, "--model-name", help="registered model name (default: trls-<dataset>-encoder)")


@app.command()
def pipeline(
    dataset: str | None = DatasetOpt,
    profile: str | None = ProfileOpt,
    sets: list[str] | None = SetOpt,
    force: bool = ForceOpt,
    params: Path = ParamsOpt,
    root: Path = RootOpt,
    model_name: str | None = ModelNameOpt,
    no_track: bool = typer.Option(False, "--no-track", help="no MLflow runs (and no registration)"),
) -> None:
    """The main job as one Prefect flow: dvc repro -> pretraining -> evaluation -> registry (what `make run` runs).

    MLflow tracking in <root>/mlflow.db; the Prefect API is ephemeral unless PREFECT_API_URL is set.
    --set overrides training settings (data settings are DVC's: edit params.yaml).
    """

    def go() -> None:
        from flows.pipeline import pipeline_flow, pipeline_params  # (pipeline_params imports prefect too)
        from trls_core.tracking.remote import check_store

        root_p = root.resolve()
        params_p = params if params.is_absolute() else root_p / params
        pipeline_params(params_p, profile, dataset, sets)  # fails here, before Prefect starts
        if not no_track:  # so does a tracking server that does not answer (a bounded wait; exit 2 naming it)
            check_store(root_p)

        out = pipeline_flow(
            root=str(root_p),
            params_path=str(params_p),
            profile=profile,
            dataset=dataset,
            track=not no_track,
            model_name=model_name,
            force=force,
            sets=sets or None,
        )
        summary = {k: out.get(k) for k in ("dataset", "profile", "report_dir", "also_report_dirs", "run_id")}
        if out.get("registration"):
            summary["registration"] = out["registration"]
        typer.echo(json.dumps(summary, indent=2, default=str))

    _guard(go)


@app.command()
def schedule(
    cron: str = typer.Option("0 3 * * 1", "--cron", help="cron expression (UTC) for the retraining runs"),
    dataset: str | None = DatasetOpt,
    profile: str | None = ProfileOpt,
    model_name: str | None = ModelNameOpt,
    force: bool = typer.Option(False, "--force", help="make every scheduled run a real retrain (see trls pipeline)"),
    name: str = typer.Option("trls-retrain", "--name", help="Prefect deployment name"),
    params: Path = ParamsOpt,
    root: Path = RootOpt,
) -> None:
    """Serve the pipeline as a cron-scheduled Prefect deployment, one run at a time (blocks until Ctrl-C).

    A tick that comes while a run is going waits for it (deployment concurrency limit 1).
    An unknown profile or dataset fails here, before anything is served.
    """

    def go() -> None:
        from flows.schedule import serve_pipeline

        serve_pipeline(
            cron=cron,
            name=name,
            params_path=str(params),
            root=str(root),
            profile=profile,
            dataset=dataset,
            model_name=model_name,
            force=force,
        )

    _guard(go)


@app.command()
def compare(
    methods: list[str] | None = typer.Option(
        None, "--method", "-m", help="a method to compare (repeatable; default: compare.methods)"
    ),
    task: str | None = typer.Option(None, "--task", help="evaluation task (default: evaluate.task)"),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        "-d",
        help="a built dataset (default: pretrain.dataset); "
        "compare.datasets.<name> in params.yaml sets its task and budget",
    ),
    params: Path = ParamsOpt,
    profile: str | None = ProfileOpt,
    root: Path = RootOpt,
    no_track: bool = typer.Option(False, "--no-track", help="do not record MLflow runs"),
) -> None:
    """Methods (TRLS, baselines, ablations) through one protocol -> reports/<dataset>/comparison.*."""

    def go() -> None:
        from trls_core.config import load_params
        from trls_core.methods import methods as registry

        known = registry(load_params(params, profile))  # the `methods` section
        for m in methods or []:
            if m not in known:
                raise TrlsError(f"--method {m!r}: unknown (known: {', '.join(sorted(known))})")
        from flows.compare import compare_flow

        out = compare_flow(
            root=str(root),
            params_path=str(params),
            profile=profile,
            methods=methods or None,
            task=task,
            track=not no_track,
            dataset=dataset,
        )
        typer.echo(json.dumps(out["files"], indent=2))

    _guard(go)


@app.command()
def study(
    overlay: Path = typer.Argument(..., help="the study overlay, e.g. experiments/epilepsy_epochs.yaml"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate every variant, print them resolved, run nothing"),
    variants: list[str] | None = typer.Option(
        None, "--variant", "-v", help="run only this variant (repeatable; default: all)"
    ),
    params: Path = ParamsOpt,
    root: Path = RootOpt,
    sets: list[str] | None = SetOpt,
    no_track: bool = typer.Option(False, "--no-track", help="do not record MLflow runs"),
) -> None:
    """A validation study: the overlay's variants pretrained and scored on held-out validation.

    Writes reports/studies/<name>.{csv,md}; MLflow: one parent run, one child per variant.
    --set applies over every variant (e.g. --set pretrain.device=cuda).
    """
    from trls_core.study.plan import describe, plan_study

    def go() -> None:
        import yaml

        study_, plan = plan_study(overlay, params, sets, variants)  # a bad overlay fails before Prefect starts
        if dry_run:
            doc = describe(study_, plan, params)
            typer.echo(yaml.safe_dump(doc, sort_keys=False, width=120, default_flow_style=None))
            return
        from flows.study import study_flow

        out = study_flow(
            overlay=str(overlay.resolve()),
            root=str(root),
            params_path=str(params.resolve()),
            sets=sets or None,
            variants=variants or None,
            track=not no_track,
        )
        typer.echo(json.dumps(out["files"], indent=2))

    _guard(go)


@app.command()
def embed(
    input_path: Path = typer.Argument(..., metavar="INPUT", help="windows: .parquet, .csv, .npz or UCR .tsv"),
    output_path: Path = typer.Argument(..., metavar="OUTPUT", help="the embeddings Parquet to write"),
    model: str = typer.Option(..., "--model", "-m", help="e.g. models:/trls-epilepsy-encoder@champion"),
    root: Path = RootOpt,
    fs: float | None = typer.Option(None, "--fs", help="the windows' sampling rate, when the file carries none"),
) -> None:
    """Embed every window of INPUT with a registered model -> OUTPUT (Parquet, input ids kept).

    Windows that do not match the model's channels, length or rate: nothing is written.
    """
    from trls_core.inference import embed_file

    out = _guard(lambda: embed_file(model, input_path, output_path, root=root, fs=fs))
    typer.echo(f"embeddings: {out['output']} ({out['rows']} windows x {out['dim']})")  # type: ignore[index]


def main() -> None:  # pragma: no cover - console entry
    from trls_core.runtime import exit_on_sigterm, quiet_defaults, tune_malloc

    quiet_defaults()  # telemetry off unless the user set it (before prefect/mlflow are imported)
    tune_malloc()  # training processes reuse freed activation memory (trls_core/runtime.py)
    exit_on_sigterm()  # a stopped run unwinds: Prefect's API server and MLflow runs are shut down
    sys.exit(app())
