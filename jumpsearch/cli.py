"""``jumpsearch``: a thin command line over the Python API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jumpsearch.errors import JumpsearchError

INTERRUPTED = (
    "jumpsearch: interrupted; the running trial is marked failed and the study kept. Run the same command to resume."
)


def _run(args: argparse.Namespace) -> int:
    from jumpsearch.results import format_table, pareto_front
    from jumpsearch.space import load_space
    from jumpsearch.storage import default_storage, redact
    from jumpsearch.study import count_complete, run_search

    space = load_space(args.space)
    storage = args.storage or default_storage(space.name)
    try:
        study = run_search(
            space,
            trials=args.trials,
            timeout=args.timeout,
            storage=storage,
            study_name=args.study_name,
            seed=args.seed,
            data_dir=args.data_dir,
            progress=not args.quiet,
        )
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    print(f"{count_complete(study)} complete trials in study {study.study_name!r} at {redact(storage)}")
    print(format_table(pareto_front(study)))
    return 0


def _results(args: argparse.Namespace) -> int:
    from jumpsearch.results import format_table, load_study, pareto_front
    from jumpsearch.space import load_space
    from jumpsearch.storage import default_storage

    storage, name = args.storage, args.study_name
    if args.space:
        space = load_space(args.space)
        storage, name = storage or default_storage(space.name), name or space.name
    if not storage:
        raise JumpsearchError("results: give --space FILE, or --storage URL (and --study-name if it holds several)")
    print(format_table(pareto_front(load_study(storage, name))))
    return 0


def _ablate(args: argparse.Namespace) -> int:
    from jumpsearch.ablation import run_ablation, write_ablation
    from jumpsearch.space import load_space, parse_count

    space = load_space(args.space)
    budgets = None
    if args.budgets:
        budgets = [parse_count(b, "--budgets") for b in args.budgets.split(",")]
    try:
        studies = run_ablation(
            space,
            trials=args.trials,
            timeout=args.timeout,
            storage=args.storage,
            seed=args.seed,
            data_dir=args.data_dir,
            progress=not args.quiet,
        )
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    table, paths = write_ablation(studies, args.out, space.name, budgets)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for path in paths:
        print(f"wrote {path}")
    return 0


def _search_arguments(parser: argparse.ArgumentParser, trials_help: str) -> None:
    parser.add_argument(
        "--space", required=True, metavar="FILE", help="search space YAML, e.g. search_spaces/digits.yaml"
    )
    parser.add_argument("--trials", type=int, metavar="N", help=trials_help)
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="stop starting new trials after this long")
    parser.add_argument("--storage", metavar="URL", help="Optuna storage (default: sqlite:///studies/<space name>.db)")
    parser.add_argument("--seed", type=int, metavar="N", help="sampler and training seed (default: the space's seed)")
    parser.add_argument("--data-dir", metavar="DIR", help="folder of extracted CIFAR python batches, or the .npz file")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jumpsearch",
        description="Macro-architecture search over JumpNet CNNs: accuracy against parameters in an Optuna study.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="search a space (resumes an existing study)",
        description="Sample, train briefly and rank candidates of a search space. Running it again resumes the "
        "study until it holds --trials complete trials; several workers may share one --storage.",
    )
    _search_arguments(run, "complete trials the study should hold (default: the space's trials, else 20)")
    run.add_argument("--study-name", metavar="NAME", help="study name (default: the space's name)")
    run.set_defaults(func=_run)

    results = commands.add_parser(
        "results",
        help="print a study's Pareto front",
        description="Print the Pareto front (accuracy against params) of a study, most accurate first.",
    )
    results.add_argument("--space", metavar="FILE", help="the space file whose default storage and name to read")
    results.add_argument("--storage", metavar="URL", help="Optuna storage URL")
    results.add_argument(
        "--study-name", metavar="NAME", help="study name (default: the space's name or the only study)"
    )
    results.set_defaults(func=_results)

    ablate = commands.add_parser(
        "ablate",
        help="the same trial budget for each family of a space, compared front against front",
        description="Run one study per family of the space (<name>-<family>), each to --trials complete trials, "
        "then write a table per family and a plot of the fronts (HTML) with the fronts as CSV.",
    )
    _search_arguments(ablate, "complete trials for each family (default: the space's trials)")
    ablate.add_argument(
        "--budgets", metavar="N,N,...", help="parameter budgets for the table, e.g. 10k,50k (default: 4, log-spaced)"
    )
    ablate.add_argument(
        "--out", default="studies", metavar="DIR", help="where the table, fronts and plot go (default: studies)"
    )
    ablate.set_defaults(func=_ablate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if getattr(args, "trials", None) is not None and args.trials < 1:
        print("jumpsearch: error: --trials: must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except JumpsearchError as e:
        print(f"jumpsearch: error: {e}", file=sys.stderr)
        return 2
