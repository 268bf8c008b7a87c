"""Multi-objective asynchronous successive halving: which trials go on training, decided at rungs.

A trial of an ``asha`` schedule stops at epochs ``min_epochs · η^k`` (the rungs, below its full budget),
scores its validation accuracy there, and goes on only if it ranks in the top ``1/η`` of the trials that
reached the same rung. Ranking is on all the study's objectives at once (the rung's accuracy, params,
FLOPs where they are objectives): non-dominated sorting first, then, inside a front, NSGA-II's crowding
distance, so that a front's ends and its sparse stretches go on before its crowded middle. Optuna's own
pruners take one objective (``Trial.report`` raises in a multi-objective study), hence this module.

The rule is a pure function of the values recorded at a rung (``continues``); ``study.Objective`` reads
them from the storage, so workers decide alone, with no central process, and a killed worker's records
stay valid: it did reach the rungs it recorded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from jumpsearch.config import _PlainData, at_least, one_of, rule
from jumpsearch.errors import ConfigError

SCHEDULES = ("none", "asha")
LOG_SCALED = ("params", "flops")  # spread along counts is judged on a log scale, as the front is plotted


@dataclass(frozen=True)
class Schedule(_PlainData):
    """How long each trial trains: ``none`` (its full budget) or ``asha`` (stopped early at rungs when
    it ranks outside the top ``1/reduction_factor`` of the trials that reached the rung)."""

    section: ClassVar[str] = "schedule"
    name: str = rule("none", one_of(*SCHEDULES), f"unknown schedule (known: {', '.join(SCHEDULES)})")
    min_epochs: int = rule(1, at_least(1), "must be at least 1")
    reduction_factor: int = rule(3, at_least(2), "must be at least 2")

    def rungs(self, epochs: int) -> tuple[int, ...]:
        """The epochs at which a trial of ``epochs`` is judged: ``min_epochs · η^k`` below ``epochs``."""
        if self.name == "none":
            return ()
        rungs, epoch = [], self.min_epochs
        while epoch < epochs:
            rungs.append(epoch)
            epoch *= self.reduction_factor
        return tuple(rungs)

    @staticmethod
    def from_dict(data: Any, where: str = "schedule") -> Schedule:
        if isinstance(data, str):
            data = {"name": data}
        schedule: Schedule = Schedule._from_fields(data or {}, where)
        return schedule

    def check_epochs(self, epochs: Sequence[int], where: str) -> None:
        """A schedule whose first rung is at or past every budget never stops anything: say so."""
        if self.name != "none" and all(not self.rungs(e) for e in epochs):
            raise ConfigError(
                f"{where}: schedule.min_epochs: {self.min_epochs} leaves no rung below training.epochs "
                f"({max(epochs)}); lower min_epochs or raise epochs"
            )


def nondominated_ranks(points: np.ndarray) -> np.ndarray:
    """Front number (0 = non-dominated) of each row, every column to be minimised: in O(n log n) for two
    columns (a rung of thousands of trials), by comparing every pair otherwise."""
    if points.ndim == 2 and points.shape[1] == 2 and len(points):
        return _ranks_of_two(points)
    return _ranks_by_pairs(points)


def _ranks_of_two(points: np.ndarray) -> np.ndarray:
    """Two columns: rows in lexicographic order, each joins the first front whose last member does not
    dominate it (patience sorting). A row is dominated by an earlier one exactly when that one's (second,
    first) value is lower, so each front's last member, as (second, first), rises with the front number
    and a binary search finds the front."""
    import bisect

    order = np.lexsort((points[:, 1], points[:, 0]))
    ranks = np.empty(len(points), dtype=int)
    tails: list[tuple[float, float]] = []  # per front, its last member as (second, first)
    for i in order:
        key = (float(points[i, 1]), float(points[i, 0]))
        rank = bisect.bisect_left(tails, key)
        if rank == len(tails):
            tails.append(key)
        else:
            tails[rank] = key
        ranks[i] = rank
    return ranks


def _ranks_by_pairs(points: np.ndarray) -> np.ndarray:
    n = len(points)
    better_or_equal = np.all(points[:, None, :] <= points[None, :, :], axis=2)
    strictly = np.any(points[:, None, :] < points[None, :, :], axis=2)
    dominates = better_or_equal & strictly  # dominates[i, j]: i dominates j
    dominated_by = dominates.sum(axis=0)
    ranks = np.full(n, -1)
    rank, current = 0, np.flatnonzero(dominated_by == 0)
    while current.size:
        ranks[current] = rank
        dominated_by = dominated_by - dominates[current].sum(axis=0)
        dominated_by[ranks >= 0] = -1
        current = np.flatnonzero(dominated_by == 0)
        rank += 1
    return ranks


def nondominated(points: np.ndarray) -> np.ndarray:
    """Whether each row is on the first front (every column to be minimised), in O(n log n) time for
    two columns and O(n · front) otherwise, in O(n) memory: for a front of thousands of trials, where
    ``nondominated_ranks`` compares every pair. Equal rows are all kept."""
    n = len(points)
    if n == 0:
        return np.zeros(0, dtype=bool)
    unique, inverse = np.unique(points, axis=0, return_inverse=True)  # sorted lexicographically
    if unique.shape[1] == 1:
        keep = unique[:, 0] == unique[0, 0]
    elif unique.shape[1] == 2:  # a later row (larger first value) survives only below every earlier second value
        earlier = np.concatenate([[np.inf], np.minimum.accumulate(unique[:-1, 1])])
        keep = unique[:, 1] < earlier
    else:  # no later row in lexicographic order dominates an earlier one: one pass against the front so far
        keep = np.zeros(len(unique), dtype=bool)
        kept = np.empty((0, unique.shape[1]))
        for i, row in enumerate(unique):
            if not np.any(np.all(kept <= row, axis=1)):  # distinct rows: ≤ everywhere means dominated
                keep[i] = True
                kept = np.vstack([kept, row])
    return keep[inverse.reshape(-1)]


def crowding_distances(points: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each row of one front: the ends of each objective get infinity,
    the others the sum over objectives of their neighbours' gap, normalised by the front's range.
    Equal rows share one distance, computed once, so the answer does not depend on row order."""
    unique, inverse = np.unique(points, axis=0, return_inverse=True)
    distance = np.zeros(len(unique))
    for column in range(unique.shape[1]):
        values = unique[:, column]
        order = np.argsort(values, kind="stable")
        span = values[order[-1]] - values[order[0]]
        distance[order[0]] = distance[order[-1]] = math.inf
        if span > 0 and len(order) > 2:
            distance[order[1:-1]] += (values[order[2:]] - values[order[:-2]]) / span
    return distance[inverse.reshape(-1)]


def continues(
    newcomer: Sequence[float],
    recorded: Sequence[Sequence[float]],
    directions: Sequence[str],
    reduction_factor: int,
    objectives: Sequence[str] = (),
) -> bool:
    """Whether a trial that reached a rung with ``newcomer``'s values goes on, given the values the other
    trials recorded at that rung: it must rank in the top ``max(1, n // reduction_factor)`` of the ``n``
    trials there (itself included), ranked by non-dominated sorting, then by crowding distance inside a
    front. A recorded trial tied with the newcomer on both counts does not rank ahead of it.

    ``directions`` are Optuna's ("maximize"/"minimize"); ``objectives`` names the values, to judge the
    spread of params and FLOPs on a log scale.
    """
    points = np.array([list(newcomer), *map(list, recorded)], dtype=float).reshape(len(recorded) + 1, -1)
    for column, direction in enumerate(directions):
        if column < len(objectives) and objectives[column] in LOG_SCALED:
            points[:, column] = np.log10(np.maximum(points[:, column], 1.0))
        if direction == "maximize":
            points[:, column] = -points[:, column]
    ranks = nondominated_ranks(points)
    # Every earlier front is ahead and every later one behind: crowding matters only in the newcomer's.
    mine = ranks == ranks[0]
    crowding = crowding_distances(points[mine])  # the newcomer is its front's first row
    ahead = int((ranks < ranks[0]).sum()) + int((crowding > crowding[0]).sum())
    return ahead < max(1, len(points) // reduction_factor)
