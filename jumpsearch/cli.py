"""``jumpsearch``: a thin command line over the Python API."""

from __future__ import annotations

import argparse
import logging
import math
import re
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from jumpsearch.config import echo
from jumpsearch.errors import JumpsearchError, handle_signals, interruption

logger = logging.getLogger("jumpsearch.cli")

DATA_DIR_HELP = "folder of Fashion-MNIST's four .gz files or of extracted CIFAR batches, or the .npz file"
PARAMETERS = {"out_dir": "out"}  # a library parameter whose option has another name
RESUME = {
    "run": "the running trial is marked failed and the study kept; run the same command to resume",
    "ablate": "the running trial is marked failed and the studies kept; run the same command to resume",
    "train": "run the same command to resume from the last finished epoch",
    "confirm": "the runs that finished are stored in the study; run the same command to resume",
}


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (and the way to the help) instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"jumpsearch: error: {message} (see {self.prog} --help)\n")


def _at_least(text: str, least: int, most: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least or (most is not None and value > most):
        if most is not None:
            says = f"an integer from {least} to {most}"
        else:
            says = "a positive integer" if least == 1 else "a non-negative integer"
        raise argparse.ArgumentTypeError(f"expected {says}, got {echo(text)}")
    return value


def _positive(text: str) -> int:
    return _at_least(text, 1)


def _count(text: str) -> int:
    """0 or a positive integer."""
    return _at_least(text, 0)


def _seed(text: str) -> int:
    from jumpsearch.space import MAX_SEED

    return _at_least(text, 0, MAX_SEED)


def _port(text: str) -> int:
    return _at_least(text, 1, 65535)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {echo(text)}")
    return value


def _budget(text: str) -> int:
    """A count such as 500k (``space.parse_count``)."""
    from jumpsearch.space import parse_count

    try:
        count = parse_count(text, "")
    except JumpsearchError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix(": ")) from None
    assert count is not None  # text is a string
    return count


def _budgets(text: str) -> list[int]:
    try:
        return [_budget(part) for part in text.split(",")]
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e} in {echo(text)}") from None


def _as_flags(message: str, args: argparse.Namespace) -> str:
    """The library names its parameters (``seeds=0``, ``data_dir=FOLDER``); a command-line user reads
    the options that set them (``--seeds 0``, ``--data-dir FOLDER``)."""

    def flag(match: re.Match[str]) -> str:
        name = PARAMETERS.get(match.group(1), match.group(1))
        if not hasattr(args, name):
            return match.group(0)
        return f"{'-' if len(name) == 1 else '--'}{name.replace('_', '-')} "

    return re.sub(r"(?<![^\s(])([a-z][a-z_]*)=", flag, message)  # a word of its own: not inside a URL


def _check_backend() -> None:
    """A backend Keras cannot import fails inside ``import keras`` (and in every worker): say so first."""
    from jumpsearch.device import check_backend

    check_backend()


def _search_options(args: argparse.Namespace) -> dict:
    """What ``run`` and ``ablate`` pass alike to the search."""
    keys = ("trials", "timeout", "storage", "seed", "data_dir")
    return {**{key: getattr(args, key) for key in keys}, "progress": not args.quiet}


def _run(args: argparse.Namespace) -> int:
    from jumpsearch.records import summary
    from jumpsearch.report import annotate_for_dashboard
    from jumpsearch.results import format_table, pareto_front
    from jumpsearch.space import load_space
    from jumpsearch.storage import redact, storage_url
    from jumpsearch.workers import gpu_ids, run_workers

    space = load_space(args.space)
    study = run_workers(
        space,
        workers=args.workers,
        gpus=gpu_ids(args.gpus) if args.gpus else None,
        recycle=args.recycle,
        study_name=args.study_name,
        heartbeat=args.heartbeat,
        **_search_options(args),
    )
    try:
        annotate_for_dashboard(study)
    except Exception as e:  # a worker racing another for the note must not fail a finished search
        logger.warning("could not annotate the study for optuna-dashboard (%s)", e)
    url = storage_url(args.storage, space.name)
    print(f"study {study.study_name!r} at {redact(url)}: {summary(study)}")
    print(format_table(pareto_front(study)))
    return 0


def _study_of(args: argparse.Namespace):  # -> optuna.Study
    """The study named by --space, or by --storage (and --study-name)."""
    from jumpsearch.results import load_study
    from jumpsearch.space import load_space
    from jumpsearch.storage import storage_url

    storage, name = args.storage, args.study_name
    if args.space:
        space = load_space(args.space)
        storage, name = storage_url(storage, space.name), name or space.name
    if not storage:
        raise JumpsearchError(
            f"{args.command}: give --space FILE, or --storage URL (and --study-name if it holds several)"
        )
    return load_study(storage, name)


def _picked(args: argparse.Namespace, study: Any):  # (argparse's, optuna.Study) -> list[Best]
    from jumpsearch.results import best_configs

    if args.by == "confirmed":  # say which of the stored confirmations ranks
        from jumpsearch.confirm import describe, stored_confirmation

        used = stored_confirmation(study)
        if used is not None:
            recipe = f" with the recipe {describe(used.recipe)}" if used.recipe else " (the search's training)"
            print(f"ranked by confirm's runs at {used.epochs} epochs{recipe}", file=sys.stderr)
    return best_configs(
        study,
        k=args.k,
        max_params=args.max_params,
        max_flops=args.max_flops,
        pick_knee=args.knee,
        by=args.by,
    )


def _results(args: argparse.Namespace) -> int:
    from jumpsearch.columns import snapshot
    from jumpsearch.records import summary
    from jumpsearch.results import format_table, pareto_front, trials_table

    study = _study_of(args)
    if args.csv or args.parquet:
        table = trials_table(study)
        for path in (args.csv, args.parquet):
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        if args.csv:
            table.to_csv(args.csv, index=False)
            print(f"wrote {args.csv} ({len(table)} trials)")
        if args.parquet:
            try:
                table.to_parquet(args.parquet, index=False)
            except ImportError:
                raise JumpsearchError("--parquet needs pyarrow: pip install 'jumpsearch[parquet]'") from None
            print(f"wrote {args.parquet} ({len(table)} trials)")
        return 0
    with snapshot():  # where the storage cannot count (a journal), the trials read once for both
        line = summary(study)
        front = pareto_front(study, [b.trial for b in _picked(args, study)])
    print(f"study {study.study_name!r}: {line}", file=sys.stderr)
    print(format_table(front))
    return 0


def _export(args: argparse.Namespace) -> int:
    from jumpsearch.results import export_configs, searched_data

    study = _study_of(args)
    picked = _picked(args, study)
    if not picked:
        raise JumpsearchError("export: no front trial matches (none completed, or none within the budget)")
    data = searched_data(study, args.data_dir)
    path = export_configs(picked, args.out, data)
    print(f"wrote {len(picked)} configuration{'s' * (len(picked) != 1)} to {path}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from jumpsearch.config import DATASETS, DataConfig
    from jumpsearch.data import load_dataset
    from jumpsearch.final import AUGMENTED, check_fits, train_final
    from jumpsearch.results import exported_data, exported_recipe, load_configs

    candidates, data_config = load_configs(args.config), exported_data(args.config)
    if args.index >= len(candidates):
        raise JumpsearchError(f"{args.config}: --index {args.index}: the file holds {len(candidates)} candidates")
    candidate = candidates[args.index]
    if args.dataset:
        data_config = DataConfig.from_dict({"dataset": args.dataset, "path": args.data_dir})
    if data_config is None:
        raise JumpsearchError(f"{args.config}: names no data set; pass --dataset {'|'.join(DATASETS)}")
    data = load_dataset(data_config, args.data_dir)
    try:
        check_fits(candidate, data)
    except JumpsearchError as e:
        raise JumpsearchError(f"{args.config}: candidate {args.index}: {e}") from None
    augment = None if args.augment is None else {"auto": data.name in AUGMENTED, "on": True, "off": False}[args.augment]
    recipe = exported_recipe(args.config)
    result = train_final(candidate, data, args.out, epochs=args.epochs, recipe=recipe, augment=augment, seed=args.seed)
    test = f"{result.test_accuracy:.4f}" if result.test_accuracy is not None else "n/a (the data set has no test split)"
    print(f"validation accuracy {result.val_accuracy:.4f}, test accuracy {test}")
    print(f"saved {result.model_path}; {result.epochs} epochs in {result.train_seconds:.1f} s on {result.device}")
    return 0


def _confirm(args: argparse.Namespace) -> int:
    from jumpsearch.confirm import confirm
    from jumpsearch.report import annotate_for_dashboard
    from jumpsearch.results import format_table, read_recipe

    recipe = read_recipe(args.recipe) if args.recipe else None
    study = _study_of(args)
    result = confirm(
        study, epochs=args.epochs, seeds=args.seeds, others=args.others, data_dir=args.data_dir, recipe=recipe
    )
    annotate_for_dashboard(study)
    print(format_table(result.table))
    print(result.summary())
    return 0


def _report(args: argparse.Namespace) -> int:
    from jumpsearch.report import write_report

    study = _study_of(args)
    path = write_report(study, args.out or f"studies/{study.study_name}-report.html")
    print(f"wrote {path}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    import optuna_dashboard

    from jumpsearch.space import load_space
    from jumpsearch.storage import open_storage, redact, require_existing, storage_url

    if not (args.storage or args.space):
        raise JumpsearchError("dashboard: give --space FILE or --storage URL")
    storage = args.storage or storage_url(None, load_space(args.space).name)
    require_existing(storage)
    opened = open_storage(storage)
    with socket.socket() as probe:  # a port in use is found now, not as a traceback from the server
        try:
            probe.bind((args.host, args.port))
        except OSError as e:
            raise JumpsearchError(
                f"--port {args.port}: cannot listen on {args.host}:{args.port} ({e.strerror})"
            ) from None
    print(f"optuna-dashboard for {redact(storage)} at http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    # The server runs in a daemon thread and this one only waits: a signal then always lands here, never
    # inside a request's database code or a finalizer that could swallow it and leave the server running.
    server = threading.Thread(
        target=optuna_dashboard.run_server, args=(opened,), kwargs={"host": args.host, "port": args.port}, daemon=True
    )
    server.start()
    try:
        while server.is_alive():
            server.join(0.5)
    except KeyboardInterrupt:
        pass
    return 0


def _ablate(args: argparse.Namespace) -> int:
    from jumpsearch.ablation import run_ablation, write_ablation
    from jumpsearch.space import load_space

    space = load_space(args.space)
    studies = run_ablation(space, **_search_options(args))
    table, paths = write_ablation(studies, args.out, space.name, args.budgets)
    accuracy = {c: "{:.4f}".format for c in table.columns if "acc" in c}
    print(table.to_string(index=False, formatters=accuracy))
    for path in paths:
        print(f"wrote {path}")
    return 0


def _search_arguments(parser: argparse.ArgumentParser, trials_help: str) -> None:
    parser.add_argument(
        "--space", required=True, metavar="FILE", help="search space YAML, e.g. search_spaces/digits.yaml"
    )
    parser.add_argument("--trials", type=_positive, metavar="N", help=trials_help)
    parser.add_argument("--timeout", type=_seconds, metavar="SECONDS", help="stop starting new trials after this long")
    parser.add_argument("--storage", metavar="URL", help="Optuna storage (default: sqlite:///studies/<space name>.db)")
    parser.add_argument("--seed", type=_seed, metavar="N", help="sampler and training seed (default: the space's seed)")
    parser.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _study_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", metavar="FILE", help="the space file whose default storage and name to read")
    parser.add_argument("--storage", metavar="URL", help="Optuna storage URL")
    parser.add_argument("--study-name", metavar="NAME", help="study name (default: the space's name or the only study)")


def _pick_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-params", type=_budget, metavar="N", help="only models within this many params, e.g. 500k"
    )
    parser.add_argument("--max-flops", type=_budget, metavar="N", help="only models within this many FLOPs, e.g. 2M")
    parser.add_argument("--knee", action="store_true", help="only the knee of the front")
    parser.add_argument("-k", type=_positive, metavar="K", help="at most K, most accurate first")
    parser.add_argument(
        "--by", choices=("search", "confirmed"), default="search",
        help="rank by the search's accuracy (default), or by confirm's longer runs (their front)",
    )  # fmt: skip


def make_parser() -> argparse.ArgumentParser:
    from jumpsearch.config import DATASETS
    from jumpsearch.storage import HEARTBEAT_INTERVAL

    parser = _Parser(
        prog="jumpsearch",
        description="Macro-architecture search over JumpNet CNNs: accuracy against parameters in an Optuna study.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug messages, the backend's start-up lines too")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser(
        "run",
        help="search a space (resumes an existing study)",
        description="Sample, train briefly and rank candidates of a search space. Running it again resumes the "
        "study until it holds --trials trained trials, each configuration trained once; several workers and "
        "machines may share one --storage. Ctrl-C or SIGTERM fails the running trial and keeps the study.",
    )
    _search_arguments(run, "trained trials the study should hold (default: the space's trials, else 20)")
    run.add_argument(
        "--workers", type=_positive, default=1, metavar="N", help="worker processes on this machine (default: 1)"
    )
    run.add_argument(
        "--gpus", metavar="all|0,1,…", help="one worker per listed GPU, each seeing only its own (0,0: two on GPU 0)"
    )
    run.add_argument(
        "--recycle", type=_count, default=20, metavar="N",
        help="replace each worker process after N trained trials, returning its memory; its successor starts "
        "while it trains (default: 20; 0: never)",
    )  # fmt: skip
    run.add_argument(
        "--heartbeat", type=_positive, default=HEARTBEAT_INTERVAL, metavar="SECONDS",
        help="seconds between a running trial's heartbeats; a trial silent for 4 is failed and retried (default: 30)",
    )  # fmt: skip
    run.add_argument("--study-name", metavar="NAME", help="study name (default: the space's name)")
    run.set_defaults(func=_run)

    results = commands.add_parser(
        "results",
        help="print a study's Pareto front, or export its trials",
        description="Print the Pareto front (accuracy against params) of a study, most accurate first; pick "
        "from it with a budget or the knee; or write every trial as a table.",
    )
    _study_arguments(results)
    _pick_arguments(results)
    results.add_argument("--csv", metavar="FILE", help="write every trial as CSV instead")
    results.add_argument("--parquet", metavar="FILE", help="write every trial as Parquet (needs pyarrow)")
    results.set_defaults(func=_results)

    export = commands.add_parser(
        "export",
        help="write the front (or a pick from it) as YAML/JSON for build_model and jumpsearch train",
        description="Write front configurations, with what they measured and the data set they were searched "
        "on, to a YAML or JSON file (by its suffix) that load_configs and jumpsearch train read back.",
    )
    _study_arguments(export)
    _pick_arguments(export)
    export.add_argument("--out", required=True, metavar="FILE", help="e.g. best.yaml or best.json")
    export.add_argument(
        "--data-dir", metavar="DIR", help="where the data set lies, for train (default: what the search was given)"
    )
    export.set_defaults(func=_export)

    train = commands.add_parser(
        "train",
        help="fully train one exported configuration and report validation and test accuracy",
        description="Train a configuration from an export file for longer, with the file's recipe (by default a "
        "cosine schedule and augmentation of natural images, random crop and flip; its recipe: section switches "
        "random erasing, label smoothing, warm-up, weight decay and weight averaging), with checkpoints; run it "
        "again after an interruption to resume. Reports validation and test accuracy and saves the model in the "
        "Keras format.",
    )
    train.add_argument("config", metavar="CONFIG", help="a file written by jumpsearch export")
    train.add_argument("--index", type=_count, default=0, metavar="I", help="which candidate of the file (default: 0)")
    train.add_argument("--epochs", type=_positive, default=30, metavar="N", help="epochs (default: 30)")
    train.add_argument("--out", default="models/run", metavar="DIR", help="checkpoints, model.keras, metrics.json")
    train.add_argument(
        "--augment",
        choices=("auto", "on", "off"),
        help="crop and flip, instead of the file's recipe.augment (auto: on for CIFAR and Fashion-MNIST)",
    )
    train.add_argument("--dataset", choices=DATASETS, help="override the data set the file names")
    train.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    train.add_argument("--seed", type=_seed, default=0, metavar="N", help="seed (default: 0)")
    train.set_defaults(func=_train)

    confirm = commands.add_parser(
        "confirm",
        help="retrain the front (and a few trials off it) longer, with several seeds: does the ranking hold?",
        description="Retrain the Pareto front and --others trials off it (spanning the accuracy range) with the "
        "search's recipe: once at the search's budget with another seed, and --seeds times for --epochs. Prints "
        "each trial's accuracies, Kendall tau and Spearman rho between search and confirmed accuracy, the "
        "seed-to-seed tau, and which front trials stay non-dominated. Stored in the study after each run: "
        "run it again to resume, and results/export --by confirmed to rank by it. With --recipe, the longer runs "
        "train as train would (augmentation, label smoothing, weight averaging...), scored on the validation split.",
    )
    _study_arguments(confirm)
    confirm.add_argument(
        "--epochs", type=_positive, metavar="N",
        help="epochs of each longer run (default: 3x the search's; with --recipe, full passes over the training "
        "split); the run with another seed keeps the search's budget",
    )  # fmt: skip
    confirm.add_argument(
        "--seeds", type=_positive, default=2, metavar="N", help="longer runs per trial (default: 2)"
    )  # fmt: skip
    confirm.add_argument(
        "--others", type=_count, default=3, metavar="N", help="trials off the front to confirm too (default: 3)"
    )
    confirm.add_argument("--data-dir", metavar="DIR", help="where the study's data set lies (as for run)")
    confirm.add_argument(
        "--recipe", metavar="FILE",
        help="train the longer runs with train's recipe from this file (an export file's recipe: section, or a file "
        "of recipe switches; switches it leaves out take train's defaults, a cosine rate among them); stored apart "
        "from runs without it",
    )  # fmt: skip
    confirm.set_defaults(func=_confirm)

    report = commands.add_parser(
        "report",
        help="write a self-contained HTML report of a study",
        description="Write one HTML file (plotly inlined, viewable offline): fronts against params and FLOPs, "
        "optimization history, importances per objective, parallel coordinates, the front as a table.",
    )
    _study_arguments(report)
    report.add_argument("--out", metavar="FILE", help="default: studies/<study>-report.html")
    report.set_defaults(func=_report)

    dashboard = commands.add_parser(
        "dashboard",
        help="serve optuna-dashboard on a study's storage",
        description="Start optuna-dashboard on the storage of --space (or --storage) and print its URL.",
    )
    dashboard.add_argument("--space", metavar="FILE", help="the space file whose default storage to serve")
    dashboard.add_argument("--storage", metavar="URL", help="Optuna storage URL")
    dashboard.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    dashboard.add_argument("--port", type=_port, default=8080, help="default: 8080")
    dashboard.set_defaults(func=_dashboard)

    ablate = commands.add_parser(
        "ablate",
        help="the same trial budget for each family of a space, compared front against front",
        description="Run one study per family of the space (<name>-<family>), each to --trials complete trials, "
        "then write a table per family and a plot of the fronts (HTML) with the fronts as CSV.",
    )
    _search_arguments(ablate, "complete trials for each family (default: the space's trials)")
    ablate.add_argument(
        "--budgets",
        type=_budgets,
        metavar="N,N,...",
        help="parameter budgets for the table, e.g. 10k,50k (default: 4, log-spaced)",
    )
    ablate.add_argument(
        "--out", default="studies", metavar="DIR", help="where the table, fronts and plot go (default: studies)"
    )
    ablate.set_defaults(func=_ablate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from jumpsearch.logs import configure

    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `jumpsearch results | head` ends quietly
    args = make_parser().parse_args(argv)
    configure(logging.DEBUG if args.verbose else logging.INFO)
    handle_signals()
    try:
        if args.command in RESUME:  # the commands that train
            _check_backend()
        return args.func(args)
    except (Exception, KeyboardInterrupt) as e:
        stop = interruption(e)  # a signal, whatever error it became where it landed (SystemError in C code)
        if stop is not None:
            hint = RESUME.get(args.command, "nothing was left half-written")
            print(f"jumpsearch: interrupted by {stop.name}; {hint}.", file=sys.stderr)
            return stop.exit_status
        if isinstance(e, JumpsearchError):
            print(f"jumpsearch: error: {_as_flags(str(e), args)}", file=sys.stderr)
            return 2
        if isinstance(e, OSError):  # an output file or folder that cannot be written
            where = f"{e.filename}: " if e.filename else ""
            print(f"jumpsearch: error: {where}{e.strerror or e}", file=sys.stderr)
            return 2
        raise
