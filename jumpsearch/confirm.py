"""Does a front hold up? Retrain it, and a few trials off it, for longer and with several seeds.

A search ranks candidates after a brief training, with one seed each. ``confirm`` measures the two
ways that ranking can mislead: seed noise (each chosen trial is trained again at the search's own
budget with another seed) and the brief budget (each is trained ``seeds`` times for ``epochs``). It
reports rank correlations (Kendall τ, Spearman ρ) between the search's accuracy and the confirmed mean,
the seed-to-seed τ at the search's budget, and which front members stay non-dominated.

With a ``recipe`` (``train``'s: augmentation, label smoothing, a schedule, weight averaging), the longer
runs train with it, as ``train`` would, and are scored on the validation split: does the front hold up
under the training its networks will get?

Results live in the study's user attribute ``confirmations`` (by budget — the epochs, followed by the
recipe's switches as JSON when there is one —, then trial → runs), written after each run, so an interrupted
confirmation resumes where it stopped and the report can show it. Several processes may confirm one
study at once (with the same or other budgets): each run is claimed first, in the user attribute
``confirmation_claims``, so that no run is trained twice, and both attributes are merged, never
overwritten (``records.merge_study_attr``). A claim lasts ``CLAIM_SECONDS`` unless its process renews
it, so a dead process's runs are taken over.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial

from jumpsearch.config import Candidate
from jumpsearch.data import Dataset, load_dataset
from jumpsearch.errors import JumpsearchError, check_interrupted
from jumpsearch.recipe import Recipe
from jumpsearch.records import front, merge_study_attr, trained
from jumpsearch.schedule import nondominated_ranks
from jumpsearch.space import stored_space
from jumpsearch.storage import require_jumpsearch_study
from jumpsearch.study import WORKER

logger = logging.getLogger(__name__)

CONFIRM_SEED = 7_919  # seeds of confirmation runs: CONFIRM_SEED + run, apart from the search's seeds
RESEED = "reseeded"  # the run at the search's own budget with another seed
CLAIM_SECONDS = 120.0  # a claim not renewed for this long is a dead process's: another takes the run over
WAIT_SECONDS = 5.0  # between looks at the runs other processes are training


@dataclass(frozen=True)
class Confirmation:
    """What ``confirm`` measured: one row per confirmed trial, and how well the search's ranking held."""

    epochs: int
    seeds: int
    table: pd.DataFrame
    kendall_tau: float | None
    spearman_rho: float | None
    seed_tau: float | None
    survivors: list[int] = field(default_factory=list)  # front trials still non-dominated when confirmed
    dropped: list[int] = field(default_factory=list)  # front trials dominated once confirmed
    recipe: Recipe | None = None  # what the longer runs trained with (None: the search's own training)

    def summary(self) -> str:
        def shown(value: float | None) -> str:
            return "n/a (fewer than 3 trials)" if value is None else f"{value:.2f}"

        recipe = f" with the recipe {describe(self.recipe)}" if self.recipe else ""
        return "\n".join(
            [
                f"search accuracy against the mean of {self.seeds} seed{'s' * (self.seeds != 1)} at {self.epochs} "
                f"epochs{recipe}: Kendall tau {shown(self.kendall_tau)}, Spearman rho {shown(self.spearman_rho)}",
                f"seed to seed at the search's budget: Kendall tau {shown(self.seed_tau)}",
                f"front trials still non-dominated: {', '.join(map(str, self.survivors)) or 'none'}"
                + (f"; dominated once confirmed: {', '.join(map(str, self.dropped))}" if self.dropped else ""),
            ]
        )


def choose(study: optuna.Study, others: int) -> list[FrozenTrial]:
    """The front, and ``others`` trials off it whose accuracies span the range (evenly spaced ranks),
    so that a rank correlation compares more than near-equals."""
    on_front = front(study)
    numbers = {t.number for t in on_front}
    rest = sorted((t for t in trained(study) if t.number not in numbers), key=lambda t: t.values[0])
    if others and rest:
        picks = np.unique(np.linspace(0, len(rest) - 1, min(others, len(rest))).round().astype(int))
        on_front = on_front + [rest[i] for i in picks]
    return sorted(on_front, key=lambda t: t.number)


def kendall_tau(x: list[float], y: list[float]) -> float | None:
    """Kendall's tau-b (ties counted as neither concordant nor discordant); None below 3 pairs."""
    if len(x) < 3:
        return None
    value = pd.Series(x).corr(pd.Series(y), method="kendall")
    return None if math.isnan(value) else float(value)


def spearman_rho(x: list[float], y: list[float]) -> float | None:
    """Spearman's rho: Pearson's correlation of the ranks (average ranks for ties); None below 3."""
    if len(x) < 3:
        return None
    value = pd.Series(x).rank().corr(pd.Series(y).rank())
    return None if math.isnan(value) else float(value)


def confirm(
    study: optuna.Study,
    *,
    epochs: int | None = None,
    seeds: int = 2,
    others: int = 3,
    data: Dataset | None = None,
    data_dir: str | None = None,
    recipe: Recipe | None = None,
    train: Callable[..., Any] | None = None,
    on_run: Callable[[int, str, float], None] | None = None,
) -> Confirmation:
    """Retrain the front and ``others`` trials off it: once at the search's budget with another seed,
    and ``seeds`` times for ``epochs`` (default three times the search's), with ``recipe`` if given
    (``train``'s recipe; validation split only). Runs already stored in the study are not repeated; runs
    with another recipe are other runs. ``train(candidate, data, seed=...)`` replaces both trainers (the
    search's, and the recipe's); ``on_run(trial, run, accuracy)`` follows progress. ConfigError if the
    recipe's warm-up leaves no epoch.

    Example:
        >>> from jumpsearch import confirm, load_study
        >>> result = confirm(load_study("sqlite:///studies/digits.db"), seeds=2)  # doctest: +SKIP
        >>> print(result.summary())  # doctest: +SKIP
    """
    require_jumpsearch_study(study)
    if seeds < 1:
        raise JumpsearchError(f"seeds={seeds}: must be at least 1")
    chosen = choose(study, others)
    if not chosen:
        raise JumpsearchError(f"study {study.study_name!r}: no completed trial to confirm yet")
    space = stored_space(study.user_attrs.get("space") or {}, study.study_name)
    search_epochs = max(Candidate.from_dict(t.user_attrs["config"]).training.epochs for t in chosen)
    epochs = epochs or 3 * search_epochs
    if epochs < 1:
        raise JumpsearchError(f"epochs={epochs}: must be at least 1")
    if recipe is not None:
        recipe.check_epochs(epochs)
    key = budget_key(epochs, recipe)
    from jumpsearch.training import train_and_evaluate

    search_train = train or train_and_evaluate
    if train is None and recipe is not None:
        from jumpsearch.final import validate_with_recipe

        train = functools.partial(validate_with_recipe, recipe=recipe)
    longer_train = train or train_and_evaluate
    if data is None:
        data = load_dataset(space.data, data_dir)
    plan = []
    for trial in chosen:
        candidate = Candidate.from_dict(trial.user_attrs["config"])
        plan.append((trial.number, RESEED, candidate, CONFIRM_SEED + 10_000 + trial.number))
        longer = Candidate(candidate.model, dataclasses.replace(candidate.training, epochs=epochs, repeats=1))
        plan += [(trial.number, str(s), longer, CONFIRM_SEED + s) for s in range(seeds)]
    total = len(plan)

    def left() -> list[tuple[int, str, Candidate, int]]:
        runs = stored_runs(study, key)
        return [p for p in plan if p[1] not in runs.get(str(p[0]), {})]

    logger.info("confirming %d trials at %d epochs%s, %d seed%s: %d of %d runs to go", len(chosen), epochs,
                f" with the recipe {describe(recipe)}" if recipe else "", seeds, "s" * (seeds != 1), len(left()),
                total)  # fmt: skip
    with _Claims(study, key) as claims:
        while todo := left():
            trained_one = False
            for number, run, candidate, seed in todo:
                if not claims.take(number, run):
                    continue  # another process is training it
                if run in stored_runs(study, key).get(str(number), {}):
                    claims.release(number, run)  # it was stored just before its claim was released
                    continue
                result = (search_train if run == RESEED else longer_train)(candidate, data, seed=seed)
                check_interrupted()  # a signal swallowed in the run's last steps: its result is not kept
                accuracy = float(result.val_accuracy)
                merge_study_attr(study, "confirmations", _with_run(key, number, run, accuracy))
                claims.release(number, run)
                trained_one = True
                logger.info("run %d of %d: trial %d, %s: validation accuracy %.4f", total - len(left()), total,
                            number, "another seed at the search's budget" if run == RESEED else f"seed {run}",
                            accuracy)  # fmt: skip
                if on_run is not None:
                    on_run(number, run, accuracy)
            if not trained_one:  # the runs left are other processes': wait for them, or for their claims to lapse
                time.sleep(WAIT_SECONDS)
    return summarise(study, chosen, stored_runs(study, key), epochs, seeds, recipe)


def budget_key(epochs: int, recipe: Recipe | None = None) -> str:
    """Where runs of this budget are stored: the epochs (``"30"``), then, when there is a recipe, its
    switches that differ from ``Recipe()``'s as compact JSON (``'30 {"augment":"on"}'``; ``'30 {}'``
    for ``Recipe()`` itself), so that a switch added later leaves the keys of stored runs as they are."""
    if recipe is None:
        return str(epochs)
    default = Recipe().to_dict()
    changed = {k: v for k, v in recipe.to_dict().items() if default.get(k) != v}
    return f"{epochs} {json.dumps(changed, sort_keys=True, separators=(',', ':'))}"


def describe(recipe: Recipe) -> str:
    """Every switch of the recipe, as compact JSON: the defaults a run trains with too (a cosine rate, say)."""
    return json.dumps(recipe.to_dict(), separators=(",", ":"))


def _recipe_of(key: str) -> Recipe | None:
    """The recipe of a stored budget; None for the search's own training, or for a recipe this version
    cannot read (its runs are still shown, as the search's)."""
    _, _, recipe = key.partition(" ")
    if not recipe:
        return None
    try:
        return Recipe.from_dict(json.loads(recipe))
    except (ValueError, JumpsearchError) as e:
        logger.warning("confirmations %r: cannot read its recipe (%s)", key, e)
        return None


def stored_runs(study: optuna.Study, key: str) -> dict[str, dict[str, float]]:
    """The confirmation runs stored under ``key`` (``budget_key``): trial → run → validation accuracy.
    A trial's reseeded run, at the search's own budget, is the same under every key: one stored under
    another counts."""
    stored = study.user_attrs.get("confirmations") or {}
    runs = {number: dict(mine) for number, mine in stored.get(key, {}).items()}
    for other in stored.values():
        for number, mine in other.items():
            if RESEED in mine:
                runs.setdefault(number, {}).setdefault(RESEED, mine[RESEED])
    return runs


def _with_run(key: str, number: int, run: str, accuracy: float) -> Callable[[Any], dict[str, Any]]:
    """For ``merge_study_attr``: the stored confirmations with this run's accuracy added."""

    def merge(stored: Any) -> dict[str, Any]:
        stored = stored or {}
        stored.setdefault(key, {}).setdefault(str(number), {})[run] = accuracy
        return stored

    return merge


class _Claims:
    """This process's claims on confirmation runs (``confirmation_claims``: "budget/trial/run" → the
    claimant and the time its claim lapses), renewed by a thread while it trains, released on the way out.

    A claim is as atomic as Optuna's study attributes allow: they offer no compare-and-set, and the last
    writer wins. A claimant writes its claim, reads it back after ``SETTLE_SECONDS`` and trains only if the
    claim is still its own; two processes can both train a run only if one of them took longer than that
    pause between reading the run free and writing its claim.
    """

    def __init__(self, study: optuna.Study, budget: str) -> None:
        self.study, self.budget = study, budget
        self.mine: set[str] = set()
        self.stop = threading.Event()
        self.renewer = threading.Thread(target=self._renew, daemon=True)

    def __enter__(self) -> _Claims:
        self.renewer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.renewer.join()
        for key in list(self.mine):  # interrupted: another process may take these runs at once
            self._release(key)

    def _key(self, number: int, run: str) -> str:
        """The reseeded run is the same whatever the budget: one claim for all."""
        return f"{RESEED}/{number}" if run == RESEED else f"{self.budget}/{number}/{run}"

    def take(self, number: int, run: str) -> bool:
        key = self._key(number, run)

        def claim(stored: Any) -> dict[str, Any]:
            stored = stored or {}
            holder = stored.get(key)
            if holder is None or (holder["by"] != WORKER and holder["until"] < time.time()):
                stored[key] = {"by": WORKER, "until": time.time() + CLAIM_SECONDS}
            return stored

        self.mine.add(key)  # first: released on the way out even if a signal comes while it is written
        if merge_study_attr(self.study, "confirmation_claims", claim)[key]["by"] != WORKER:
            self.mine.discard(key)
            return False
        return True

    def release(self, number: int, run: str) -> None:
        self._release(self._key(number, run))

    def _release(self, key: str) -> None:
        self.mine.discard(key)
        merge_study_attr(self.study, "confirmation_claims", lambda stored: _without(stored or {}, key))

    def _renew(self) -> None:
        while not self.stop.wait(CLAIM_SECONDS / 4):
            for key in list(self.mine):
                merge_study_attr(self.study, "confirmation_claims", _renewed(key, time.time() + CLAIM_SECONDS))


def _without(claims: dict[str, Any], key: str) -> dict[str, Any]:
    """The claims without this process's claim ``key``."""
    if claims.get(key, {}).get("by") == WORKER:
        del claims[key]
    return claims


def _renewed(key: str, until: float) -> Callable[[Any], dict[str, Any]]:
    """For ``merge_study_attr``: the claims with this process's claim ``key`` lasting until ``until``."""

    def merge(stored: Any) -> dict[str, Any]:
        claims = stored or {}
        if claims.get(key, {}).get("by") == WORKER and claims[key]["until"] < until:
            claims[key]["until"] = until
        return claims

    return merge


def summarise(
    study: optuna.Study,
    chosen: list[FrozenTrial],
    runs: dict[str, dict[str, float]],
    epochs: int,
    seeds: int,
    recipe: Recipe | None = None,
) -> Confirmation:
    """The table and the statistics of stored confirmation runs."""
    on_front = {t.number for t in front(study)}
    rows = []
    for trial in chosen:
        mine = runs.get(str(trial.number), {})
        confirmed = [mine[str(s)] for s in range(seeds) if str(s) in mine]
        rows.append(
            {
                "trial": trial.number,
                "front": trial.number in on_front,
                "params": trial.user_attrs["params"],
                "search": trial.values[0],
                "se": trial.user_attrs.get("accuracy_se"),
                RESEED: mine.get(RESEED),
                **{f"seed {s}": mine.get(str(s)) for s in range(seeds)},
                "mean": statistics.fmean(confirmed) if confirmed else None,
                "spread": max(confirmed) - min(confirmed) if len(confirmed) > 1 else None,
            }
        )
    table = pd.DataFrame(rows)
    done = table.dropna(subset=["mean"])
    reseeded = table.dropna(subset=[RESEED])
    kept = non_dominated(dict(zip(done["trial"], done["mean"], strict=True)),
                         dict(zip(done["trial"], done["params"], strict=True)))  # fmt: skip
    confirmed_front = sorted(on_front & set(done["trial"]))
    survivors = [n for n in confirmed_front if n in kept]
    dropped = [n for n in confirmed_front if n not in kept]
    return Confirmation(
        epochs,
        seeds,
        table,
        kendall_tau(list(done["search"]), list(done["mean"])),
        spearman_rho(list(done["search"]), list(done["mean"])),
        kendall_tau(list(reseeded["search"]), list(reseeded[RESEED])),
        survivors,
        dropped,
        recipe,
    )


def non_dominated(accuracy: dict[int, float], params: dict[int, int]) -> set[int]:
    """The trials (by number) on the front of accuracy against params: none more accurate with as few."""
    numbers = sorted(accuracy)
    if not numbers:
        return set()
    ranks = nondominated_ranks(np.array([[-accuracy[n], params[n]] for n in numbers], dtype=float))
    return {n for n, rank in zip(numbers, ranks, strict=True) if rank == 0}


def stored_confirmation(study: optuna.Study, budget: str | None = None) -> Confirmation | None:
    """The confirmation stored under ``budget`` (``budget_key``), or by default the one that confirmed
    the most trials (of those as complete, one with a recipe — the training a chosen network will get —,
    then the longest; of those alike, the first stored), without training: a confirmation begun, or cut
    short, does not replace a finished one. None when there is none."""
    stored = study.user_attrs.get("confirmations") or {}
    if budget is not None:
        stored = {budget: stored[budget]} if budget in stored else {}
    if not stored:
        return None

    def rank(key: str) -> tuple[int, bool, int]:
        confirmed = sum(any(run != RESEED for run in runs) for runs in stored[key].values())
        return confirmed, " " in key, int(key.partition(" ")[0])

    key = max(stored, key=rank)
    runs = stored_runs(study, key)
    seeds = max((sum(k != RESEED for k in r) for r in runs.values()), default=0)
    done = {t.number: t for t in study.get_trials(deepcopy=False)}
    chosen = [done[int(n)] for n in sorted(stored[key], key=int) if int(n) in done]
    return summarise(study, chosen, runs, rank(key)[2], seeds, _recipe_of(key))


def confirmed_accuracy(study: optuna.Study) -> dict[int, float]:
    """Trial number → mean confirmed accuracy, from the stored confirmation ``stored_confirmation`` picks."""
    confirmation = stored_confirmation(study)
    if confirmation is None:
        return {}
    done = confirmation.table.dropna(subset=["mean"])
    return dict(zip(done["trial"].astype(int), done["mean"].astype(float), strict=True))
