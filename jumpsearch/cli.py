"""``jumpsearch``: a thin command line over the Python API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jumpsearch.errors import JumpsearchError


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
        print(
            "jumpsearch: interrupted; the running trial is marked failed and the study kept. "
            "Run the same command to resume.",
            file=sys.stderr,
        )
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
    run.add_argument("--space", required=True, metavar="FILE", help="search space YAML, e.g. search_spaces/digits.yaml")
    run.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="complete trials the study should hold (default: the space's trials, else 20)",
    )
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="stop starting new trials after this long")
    run.add_argument("--storage", metavar="URL", help="Optuna storage (default: sqlite:///studies/<space name>.db)")
    run.add_argument("--study-name", metavar="NAME", help="study name (default: the space's name)")
    run.add_argument("--seed", type=int, metavar="N", help="sampler and training seed (default: the space's seed)")
    run.add_argument("--data-dir", metavar="DIR", help="folder of extracted CIFAR python batches, or the .npz file")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
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
