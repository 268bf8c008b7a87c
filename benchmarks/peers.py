"""The peers on the tabulated benchmark: Syne Tune's multi-objective methods, run by Syne Tune's own code
against the same table that ``tabular.py`` replays jumpsearch's strategies on.

    .venv/bin/pip install -e '.[bench]'    # syne-tune 0.16 (and huggingface_hub, which its import wants)

Each peer runs in Syne Tune's simulator: its ``Tuner`` with ``n_workers`` workers drives a
``UserBlackboxBackend`` over a ``BlackboxTabular`` built from the table: every point of the (finite)
space → its network's learning curve per epoch (the fidelity, 1 … epochs), its params, and the elapsed
time ``fixed_seconds + cumulative epoch_seconds``. A network with two recorded runs gives the blackbox
two seeds; one with a single run repeats it. Simulated time is Syne Tune's: besides the table's seconds
it charges the real seconds spent in the tuner loop and the scheduler, its ``SimulatorConfig`` delays
(0.05 s each: a trial's start, each result reaching the tuner, a stop reaching the worker, a stopped
trial's completion), and the tuner's polling: with every worker busy the tuner sleeps ``poll`` simulated
seconds (0.1 s here, 5 s by Syne Tune's default) before it looks again, so a worker freed stays idle until
then. One worker: a trial's last result comes 0.1 s (start and result delays) after its table seconds,
and the next trial starts 0.1 s (stop and completion delays) plus up to one poll after that result.

Both objectives are minimised, as Syne Tune's schedulers take one direction for all metrics:
``error`` = 1 − validation accuracy, and ``size`` = log10 params scaled as the hypervolume scales them
(``tabular.params_scale``). Pareto dominance is the same as for (accuracy, params); the scaling matters
only where Syne Tune measures distances between points (MOASHA's epsilon-net inside a front).

Methods:
- ``moasha``: ``MOASHA`` (non-dominated sort with epsilon-net), grace period 1, reduction factor 3,
  max_t = epochs: rungs at 1 and 3 of 9 epochs, as jumpsearch's asha schedule.
- ``morea``: ``MultiObjectiveRegularizedEvolution`` (Syne Tune's multi-objective regularized evolution) in
  a ``SingleFidelityScheduler``: every trial trains to the full budget. Population 10, sample 3: Syne
  Tune's defaults (100, 10) draw the first 100 trials at random, past the benchmark's budget (about 40
  full trials), so they would replay random search; 10 is a quarter of that budget, and 3 keeps Real et
  al.'s sample/population ratio (25/100).
  Syne Tune's model-based multi-objective method, ``EHVI``, needs BoTorch (and PyTorch), which the
  ``bench`` extra does not install: regularized evolution runs on Syne Tune's own dependencies.

Both run as Syne Tune 0.16 ships them, including this: its ``NonDominatedPriority`` returns the items'
order (indices, best first) where MOASHA's rungs and the evolution's parent choice read it as each item's
priority, so a rung's decision on a new trial depends on which recorded trial sorts last, not on the new
one (a newcomer that dominates every trial at its rung can be stopped), and parents are picked likewise.
So that the comparison is with the method and not only with that slip, ``moasha_ranked`` runs MOASHA with
the same sort turned into each item's rank (``np.argsort`` of the order), which is what its rungs expect.

Each trial becomes one ``tabular.Event`` when it ended: its last result's simulated time stamp
(``st_tuner_time``), the epochs it trained, its accuracy there, and ``stopped`` when it ended before the
full budget (stopped by the scheduler, or cut at the horizon). Results after the horizon are dropped, so
no event ends after it; the hypervolume is then computed by ``tabular`` as for every other strategy.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tabular  # noqa: E402

EPOCH, ELAPSED = "epoch", "elapsed_time"
METRICS = ["error", "size"]  # minimised by Syne Tune
OBJECTIVES = [*METRICS, "accuracy", "params", ELAPSED]
POLL = 0.1  # simulated seconds the tuner sleeps while every worker is busy (Syne Tune's default, 5 s, would idle
# a freed worker up to 5 s: a handicap of its polling loop, not of its methods)


class Grid:
    """The finite space as Syne Tune sees it: its points, each with the network key it builds."""

    def __init__(self, space: Any, input_shape: tuple[int, int, int], num_classes: int) -> None:
        from optuna.distributions import CategoricalDistribution

        from jumpsearch.counting import candidate_key

        distributions = space.distributions()
        if not all(isinstance(d, CategoricalDistribution) for d in distributions.values()):
            ranges = [n for n, d in distributions.items() if not isinstance(d, CategoricalDistribution)]
            raise ValueError(f"{space.source}: a table needs a finite space; {', '.join(ranges)} are ranges")

        self.names = list(distributions)
        self.choices = {name: list(d.choices) for name, d in distributions.items()}
        self.keys: dict[tuple[Any, ...], str] = {}
        epochs = set()
        for values in itertools.product(*self.choices.values()):
            candidate = space._at(dict(zip(self.names, values, strict=True)), input_shape, num_classes)
            if isinstance(candidate, str) or space.constraints.violation(candidate) is not None:
                continue  # a point jumpsearch would not train either
            self.keys[values] = candidate_key(candidate)
            epochs.add(candidate.training.epochs)
        if len(epochs) != 1:
            raise ValueError(f"{space.source}: a table needs one training budget, the space has {sorted(epochs)}")
        (self.epochs,) = epochs

    def key(self, config: dict[str, Any]) -> str:
        return self.keys[tuple(config[name] for name in self.names)]


def blackbox(grid: Grid, table: tabular.Table, scale: Callable[[float], float]) -> Any:
    """``BlackboxTabular`` of the grid's points: objectives per (point, seed, epoch)."""
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
    from syne_tune.config_space import choice, randint

    missing = sorted(set(grid.keys.values()) - set(table.runs))
    if missing:
        raise KeyError(f"networks of the space not in the table: {len(missing)} (first: {missing[0]})")
    params = dict(zip(table.frame["key"], table.frame["params"], strict=True))
    seeds = max(len(runs) for runs in table.runs.values())
    values = np.empty((len(grid.keys), seeds, grid.epochs, len(OBJECTIVES)))
    for i, key in enumerate(grid.keys.values()):
        runs = table.runs[key]
        for seed in range(seeds):
            run = runs[seed % len(runs)]
            if len(run.curve) < grid.epochs:
                held = len(run.curve)
                raise ValueError(f"network {key}: the table holds {held} epochs, the space trains {grid.epochs}")
            accuracy = np.array(run.curve[: grid.epochs])
            elapsed = run.fixed_seconds + np.cumsum(run.epoch_seconds[: grid.epochs])
            values[i, seed] = np.stack([1 - accuracy, np.full(grid.epochs, scale(params[key])), accuracy,
                                        np.full(grid.epochs, params[key]), elapsed], axis=1)  # fmt: skip
    points = pd.DataFrame(list(grid.keys), columns=grid.names)
    return BlackboxTabular(
        hyperparameters=points,
        configuration_space={name: choice(c) for name, c in grid.choices.items()},
        fidelity_space={EPOCH: randint(1, grid.epochs)},
        objectives_evaluations=values,
        objectives_names=OBJECTIVES,
    )


def _moasha(config_space: dict[str, Any], epochs: int, seed: int) -> Any:
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    return MOASHA(config_space, metrics=METRICS, do_minimize=True, time_attr=EPOCH, max_t=epochs, grace_period=1,
                  reduction_factor=3, random_seed=seed)  # fmt: skip


def _ranked_priority() -> Any:
    """``NonDominatedPriority`` with its order turned into each item's rank: what MOASHA's rungs read."""
    from syne_tune.optimizer.schedulers.multiobjective.multiobjective_priority import NonDominatedPriority

    class RankedNonDominatedPriority(NonDominatedPriority):
        def priority_unsafe(self, objectives: np.ndarray) -> np.ndarray:
            return np.argsort(super().priority_unsafe(objectives))  # position of item i in the sorted order

    return RankedNonDominatedPriority()


def _moasha_ranked(config_space: dict[str, Any], epochs: int, seed: int) -> Any:
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    return MOASHA(config_space, metrics=METRICS, do_minimize=True, time_attr=EPOCH, max_t=epochs, grace_period=1,
                  reduction_factor=3, random_seed=seed, multiobjective_priority=_ranked_priority())  # fmt: skip


def _morea(config_space: dict[str, Any], epochs: int, seed: int) -> Any:
    from syne_tune.optimizer.schedulers.multiobjective import MultiObjectiveRegularizedEvolution
    from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

    searcher = MultiObjectiveRegularizedEvolution(config_space, population_size=10, sample_size=3, random_seed=seed)
    return SingleFidelityScheduler(config_space, metrics=METRICS, do_minimize=True, searcher=searcher,
                                   random_seed=seed)  # fmt: skip


METHODS: dict[str, Callable[[dict[str, Any], int, int], Any]] = {
    "moasha": _moasha,
    "moasha_ranked": _moasha_ranked,
    "morea": _morea,
}


@contextlib.contextmanager
def _quiet_tuner() -> Iterator[None]:
    """Syne Tune writes its results under $SYNETUNE_FOLDER and prints its progress: a scratch folder, and
    its prints swallowed, for the duration of one simulated search; numpy's global generator (Syne Tune's
    samplers and the backend's seed draws use it) restored after."""
    state, folder = np.random.get_state(), os.environ.get("SYNETUNE_FOLDER")
    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(io.StringIO()):
        os.environ["SYNETUNE_FOLDER"] = scratch
        try:
            yield
        finally:
            np.random.set_state(state)
            if folder is None:
                del os.environ["SYNETUNE_FOLDER"]
            else:
                os.environ["SYNETUNE_FOLDER"] = folder


def simulate_syne_tune(
    method: str,
    space: Any,
    table: tabular.Table,
    *,
    workers: int,
    seed: int,
    horizon: float,
    input_shape: tuple[int, int, int],
    num_classes: int,
    poll: float = POLL,
) -> list[tabular.Event]:
    """One search by Syne Tune's ``method`` (a key of ``METHODS``) over ``space`` replayed against
    ``table`` in Syne Tune's simulator, ``workers`` asynchronous workers, until ``horizon`` simulated
    seconds; the trials that ended, in the order they ended."""
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
    from syne_tune.constants import ST_TUNER_TIME

    grid = Grid(space, input_shape, num_classes)
    box = blackbox(grid, table, tabular.params_scale(space, input_shape, num_classes))
    callback = SimulatorCallback()
    with _quiet_tuner():
        np.random.seed(seed)  # the backend draws each trial's seed (which of a network's runs) from it
        backend = UserBlackboxBackend(box, elapsed_time_attr=ELAPSED, tuner_sleep_time=poll)
        tuner = Tuner(
            trial_backend=backend,
            scheduler=METHODS[method](box.configuration_space, grid.epochs, seed),
            stop_criterion=StoppingCriterion(max_wallclock_time=horizon),
            n_workers=workers,
            sleep_time=0,
            callbacks=[callback],
            tuner_name=f"{method}-{seed}",
            save_tuner=False,
        )
        tuner.run()
    results = callback.dataframe()
    results = results[results[ST_TUNER_TIME] <= horizon]
    events = []
    for _, rows in results.groupby("trial_id"):
        last = rows.loc[rows[EPOCH].idxmax()]
        key, epochs = grid.key({name: last[f"config_{name}"] for name in grid.names}), int(last[EPOCH])
        accuracy, stopped = float(last["accuracy"]), epochs < grid.epochs
        events.append(tabular.Event(float(last[ST_TUNER_TIME]), epochs, key, int(last["params"]), accuracy, stopped))
    return sorted(events, key=lambda e: e.seconds)


STRATEGIES: dict[str, Callable[..., list[tabular.Event]]] = {  # name: simulate(space, table, *, workers, …)
    "syne_tune_moasha": partial(simulate_syne_tune, "moasha"),
    "syne_tune_moasha_ranked": partial(simulate_syne_tune, "moasha_ranked"),
    "syne_tune_morea": partial(simulate_syne_tune, "morea"),
}


def main() -> None:
    """A smoke run: each peer once against a table, its hypervolume at the horizon."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--table", default=str(ROOT / "benchmarks" / "fashion_mnist_grid.csv"))
    parser.add_argument("--space", default=str(ROOT / "search_spaces" / "fashion_mnist_grid.yaml"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--horizon", type=float, default=1200)
    args = parser.parse_args()
    from jumpsearch.space import load_space

    space, table, shape = load_space(args.space), tabular.Table.read(args.table), (28, 28, 1)
    scale = tabular.params_scale(space, shape, 10)
    for name, run in STRATEGIES.items():
        events = run(space, table, workers=args.workers, seed=args.seed, horizon=args.horizon, input_shape=shape,
                     num_classes=10)  # fmt: skip
        hv = round(tabular.hypervolume_at(events, scale, args.horizon), 5)
        stopped = sum(e.stopped for e in events)
        print(json.dumps({"strategy": name, "runs": len(events), "stopped": stopped, "hv": hv}))


if __name__ == "__main__":
    main()
