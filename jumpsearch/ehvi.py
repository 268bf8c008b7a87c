"""A sampler that counts each point exactly before training it, and models only its accuracy.

A point's params and FLOPs are exact before it trains (``counting``); only its validation accuracy is
uncertain. TPE, NSGA-II and Optuna's GP model every objective from the trials, as if a network's size
had to be learnt. This sampler instead draws candidate points (every point of a small finite space, else
random points and neighbours of the front), counts each one, and models accuracy alone, with a Gaussian
process (scikit-learn) on the points' values and their log counts. It trains the candidate with the
highest expected hypervolume improvement per predicted second:

- the improvement over the study's front of a point whose counts are exact and whose accuracy is normal
  with the process's mean and deviation has a closed form: the expected improvement of Jones, Schonlau
  & Welch (1998), integrated over the count axes, cell by cell of the front's staircase;
- divided by the trial's predicted seconds (expected improvement per second: Snoek, Larochelle & Adams,
  "Practical Bayesian Optimization of Machine Learning Algorithms", 2012), a line fitted to the latest
  1,000 trials' recorded seconds against their FLOPs times the images they trained.

Running trials stand in the front at their predicted accuracy ("kriging believer": Ginsbourger, Le Riche
& Carraro, 2010), so that parallel workers spread out; their networks, and those already trained, are
not proposed again (a trial names its network a few milliseconds after its proposal: two workers
proposing at the same moment may pick the same point, and the later trial is then a duplicate, at no
training cost). A trial the schedule stopped enters the model at its last accuracy plus the gain
that trials trained to the end (the latest 1,000) made from that epoch on. The first
``n_startup_trials`` points spread along the params axis instead: each is the candidate farthest, in log
params, from every trial so far.

The hypervolume it improves puts each count on a log scale, from 0 at the smallest count among the
candidates and trials to 1 at the space's limit (``max_params``, ``max_flops``; without one, or below
the largest count seen, a tenth of the range past the largest), and accuracy from 0.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from jumpsearch.records import counts_as_searched, is_duplicate, is_stopped, spent_training

logger = logging.getLogger(__name__)

ENUMERATED = 4096  # a finite space up to this many points is scored whole (each point counted once)
MAX_OBSERVATIONS = 300  # trials the process is fitted on (the front's, then the latest): bounded cost
RECENT = 1000  # latest trials that set the seconds line and the gains to the end: bounded cost
CACHED_POINTS = 50_000  # points counted, kept for the next proposals


@dataclass(frozen=True)
class Described:
    """What a point is before it trains: its network and recipe (``key``), its exact counts by objective
    name (``params``, ``flops``), the work of a full trial (FLOPs × images trained, which its seconds
    grow with) and the parameters it uses (a point may set some its network ignores)."""

    key: str
    counts: dict[str, float]
    work: float
    used: dict[str, Any]


@dataclass(frozen=True)
class SpaceView:
    """What the sampler needs of a space and a data set: every parameter's distribution, the objectives
    (accuracy first, then counts), each count's limit, and ``describe(point)`` (None for a point that
    cannot be built or breaks a constraint)."""

    distributions: dict[str, BaseDistribution]
    objectives: tuple[str, ...]
    limits: dict[str, float | None]
    describe: Callable[[dict[str, Any]], Described | None]


class EHVISampler(BaseSampler):
    """Expected hypervolume improvement per second, with exact counts (see the module's docstring).

    ``n_startup_trials``: points spread along the params axis before the model is used;
    ``n_candidates``: points drawn, counted and scored per proposal in a space too large to score
    whole (one with more points than 4,096 and ``n_candidates``, or ranges);
    ``per_second``: divide the improvement by the predicted seconds (else by one: per trial).
    ``view`` is set by jumpsearch when a search starts (``SearchSpace.make_sampler``).
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        n_startup_trials: int = 5,
        n_candidates: int = 256,
        per_second: bool = True,
        view: SpaceView | None = None,
    ) -> None:
        if n_startup_trials < 0 or n_candidates < 1:
            raise ValueError(f"n_startup_trials must be at least 0 and n_candidates 1, got {n_startup_trials} "
                             f"and {n_candidates}")  # fmt: skip
        self._rng = np.random.RandomState(seed % 2**32 if seed is not None else None)
        self._startup, self._n_candidates, self._per_second = n_startup_trials, n_candidates, per_second
        self._view = view
        self._random = RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._random.reseed_rng()
        self._rng = np.random.RandomState()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if self._view is None:
            raise RuntimeError("the ehvi sampler needs the search space: run it through jumpsearch (run_search)")
        return dict(self._view.distributions)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        """A parameter the proposal did not set (a space with none left untrained): drawn at random, and
        the search's duplicate handling takes over."""
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space or self._view is None:
            return {}
        rng = self._rng
        trials = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number]
        taken = {t.user_attrs["key"] for t in trials if spent_training(t)}
        pool = [(p, d) for p, d in self._candidates(study, trial, trials, rng) if d.key not in taken]
        if not pool:
            return {}
        started = [t for t in trials if spent_training(t)]
        if len(started) < self._startup:
            chosen = _spread(pool, started, rng)
        else:
            chosen = self._best(pool, trials, rng)
        point = pool[chosen][0]
        return {name: point[name] for name in search_space if name in point}

    # --- candidates ---------------------------------------------------------------------------------------

    def _candidates(
        self, study: Study, trial: FrozenTrial, trials: list[FrozenTrial], rng: np.random.RandomState
    ) -> list[tuple[dict[str, Any], Described]]:
        """Every point of a finite space small enough, else random points and neighbours of the front's
        trials (one or two values drawn afresh); each counted, those that cannot train left out, one point
        per network."""
        view = self._view
        assert view is not None
        dists = view.distributions
        sizes = [len(d.choices) if isinstance(d, CategoricalDistribution) else math.inf for d in dists.values()]
        if math.prod(sizes) <= max(ENUMERATED, self._n_candidates):
            points = [
                dict(zip(dists, values, strict=True))
                for values in itertools.product(*(d.choices for d in dists.values()))
            ]  # type: ignore[attr-defined]
        else:
            random = RandomSampler(seed=int(rng.randint(2**31)))
            complete = [t for t in trials if t.state == TrialState.COMPLETE and not is_duplicate(t)
                        and all(o in t.user_attrs for o in view.objectives)]  # fmt: skip
            front = set(_front_numbers(complete, view.objectives[1:])) if complete else set()
            parents = [{n: v for n, v in t.params.items() if n in dists and _admits(dists[n], v)}
                       for t in complete if t.number in front]  # fmt: skip
            points = []
            for i in range(self._n_candidates):
                fresh = {n: random.sample_independent(study, trial, n, d) for n, d in dists.items()}
                if parents and i % 2:  # a neighbour: a parent with one or two values drawn afresh
                    parent = parents[rng.randint(len(parents))]
                    used = list(parent)  # a value the parent's network ignores would change nothing
                    changed = set(rng.choice(used, size=min(len(used), 1 + rng.randint(2)), replace=False))
                    fresh = {n: fresh[n] if n in changed or n not in parent else parent[n] for n in dists}
                points.append(fresh)
        seen: dict[str, tuple[dict[str, Any], Described]] = {}
        for point in points:
            described = view.describe(point)
            if described is not None and described.key not in seen:
                seen[described.key] = (point, described)
        return list(seen.values())

    # --- the model and the choice -------------------------------------------------------------------------

    def _best(
        self, pool: list[tuple[dict[str, Any], Described]], trials: list[FrozenTrial], rng: np.random.RandomState
    ) -> int:
        view = self._view
        assert view is not None
        counted = list(view.objectives[1:])
        finished = [t for t in trials if counts_as_searched(t) and "accuracy" in t.user_attrs and "key" in t.user_attrs]
        complete = [t for t in finished if not is_stopped(t)]
        if not complete:
            return _spread(pool, [t for t in trials if spent_training(t)], rng)
        gains = _gains_to_the_end(complete[-RECENT:])
        front = set(_front_numbers(complete, counted))
        observed = sorted(complete, key=lambda t: t.number)
        observed += [t for t in finished if is_stopped(t)]
        if len(observed) > MAX_OBSERVATIONS:  # the front's trials (evenly spaced if too many), the latest others
            rest = sorted((t for t in observed if t.number not in front), key=lambda t: t.number)
            observed = [t for t in observed if t.number in front]
            observed = observed[:: math.ceil(len(observed) / MAX_OBSERVATIONS)]
            observed += rest[max(0, len(rest) - (MAX_OBSERVATIONS - len(observed))) :]
        y = np.array([_accuracy(t, gains) for t in observed])
        running = [t for t in trials if t.state == TrialState.RUNNING and "key" in t.user_attrs and
                   not is_duplicate(t) and all(o in t.user_attrs for o in counted)]  # fmt: skip
        scales = _count_scales(pool, observed + running, view.limits)
        encode = _Encoder(view.distributions, scales)
        model = _fit(np.array([encode(t.params, _counts_of(t)) for t in observed]), y, rng)
        candidates = np.array([encode(d.used, d.counts) for _, d in pool])
        mean, std = _predict(model, candidates)
        members = [t for t in complete if t.number in front]  # dominated trials change no cell of the staircase
        front_counts = [[scales[o](t.user_attrs[o]) for o in counted] for t in members]
        front_accuracy = [float(t.user_attrs["accuracy"]) for t in members]
        if running:  # the kriging believer: running trials at their predicted accuracy
            guess, _ = _predict(model, np.array([encode(t.params, _counts_of(t)) for t in running]))
            front_counts += [[scales[o](t.user_attrs[o]) for o in counted] for t in running]
            front_accuracy += list(guess)
        pool_counts = np.array([[scales[o](d.counts[o]) for o in counted] for _, d in pool], dtype=float)
        improvement = expected_improvement(pool_counts, mean, std, np.array(front_counts, dtype=float),
                                           np.array(front_accuracy))  # fmt: skip
        seconds = _seconds(finished[-RECENT:], [d.work for _, d in pool]) if self._per_second else np.ones(len(pool))
        score = improvement / seconds
        ties = np.flatnonzero(score >= score.max() - 1e-12 * abs(score.max()))
        return int(ties[rng.randint(len(ties))])


def expected_improvement(
    counts: np.ndarray, mean: np.ndarray, std: np.ndarray, front_counts: np.ndarray, front_accuracy: np.ndarray
) -> np.ndarray:
    """The expected hypervolume improvement of each candidate over a front.

    ``counts``: (candidates, d) exact counts scaled to [0, 1] (0 best; 1 the reference); ``mean``,
    ``std``: (candidates,) the normal belief about each one's accuracy; ``front_counts`` (n, d) and
    ``front_accuracy`` (n,): the points so far (dominated ones change nothing). The region a candidate
    adds is the box from its counts to the reference, over accuracies from the front's staircase up to
    its own: cell by cell of that staircase, the expected improvement E[max(0, A − level)] (Jones et al.
    1998) times the part of the cell inside the box. Accuracy's reference is 0. The staircase is built
    once, (front size + 1)^d cells whatever the number of candidates, and memory stays proportional to
    its cells: candidates go through in chunks of about 4 million (candidate, cell) pairs.
    """
    counts = np.asarray(counts, dtype=float).reshape(len(mean), -1)
    front_counts = np.asarray(front_counts, dtype=float).reshape(len(front_accuracy), counts.shape[1])
    front_accuracy = np.asarray(front_accuracy, dtype=float)
    keep = _nondominated(front_counts, front_accuracy)
    front_counts, front_accuracy = front_counts[keep], front_accuracy[keep]
    dims = counts.shape[1]
    if dims == 0:  # accuracy alone: the expected improvement over the best so far
        return _ei(mean[:, None], std[:, None], np.array([max(front_accuracy, default=0.0)]))[:, 0]
    low = float(counts.min(initial=0.0))
    edges = [np.unique(np.concatenate([[low], np.clip(front_counts[:, k], low, 1.0), [1.0]])) for k in range(dims)]
    # The staircase: a front point raises every cell whose lower corner it is at or below on each axis. Put
    # its accuracy in the first such cell, then carry the maximum up each axis.
    level = np.zeros([len(e) - 1 for e in edges])
    first = [np.searchsorted(e[:-1], front_counts[:, k] - 1e-12) for k, e in enumerate(edges)]
    inside = np.all([f < len(e) - 1 for f, e in zip(first, edges, strict=True)], axis=0)
    np.maximum.at(level, tuple(f[inside] for f in first), front_accuracy[inside])
    for axis in range(dims):
        level = np.maximum.accumulate(level, axis=axis)
    level = level.reshape(-1)
    result = np.zeros(len(counts))
    rows_per_chunk = max(1, 2**22 // len(level))
    for chunk in range(0, len(counts), rows_per_chunk):
        rows = slice(chunk, chunk + rows_per_chunk)
        volume = np.ones((len(counts[rows]), 1))
        for k, e in enumerate(edges):  # each cell's width inside [x_k, 1], one axis at a time
            width = np.clip(e[None, 1:] - np.maximum(e[None, :-1], counts[rows, k : k + 1]), 0.0, None)
            volume = (volume[:, :, None] * width[:, None, :]).reshape(len(width), -1)
        gain = _ei(mean[rows, None], std[rows, None], level[None, :])
        result[rows] = np.sum(volume * gain, axis=1)
    return result


def _admits(distribution: BaseDistribution, value: Any) -> bool:
    """Whether a trial's value is still a value of the (perhaps since narrowed) distribution."""
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    low, high = distribution.low, distribution.high  # type: ignore[attr-defined]
    return isinstance(value, (int, float)) and low <= value <= high


def _ei(mean: np.ndarray, std: np.ndarray, level: np.ndarray) -> np.ndarray:
    """E[max(0, A − level)] for A normal(mean, std), elementwise (a deviation of 0: max(0, mean − level))."""
    from scipy.stats import norm

    std = np.maximum(std, 1e-12)
    z = (mean - level) / std
    return np.maximum((mean - level) * norm.cdf(z) + std * norm.pdf(z), 0.0)


def _nondominated(counts: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    from jumpsearch.schedule import nondominated

    return nondominated(np.column_stack([counts, -accuracy]))


def _front_numbers(trials: list[FrozenTrial], counted: Sequence[str]) -> list[int]:
    counts = np.array([[t.user_attrs[o] for o in counted] for t in trials], dtype=float)
    counts = counts.reshape(len(trials), len(counted))
    accuracy = np.array([t.user_attrs["accuracy"] for t in trials], dtype=float)
    return [t.number for t, keep in zip(trials, _nondominated(counts, accuracy), strict=True) if keep]


def _spread(
    pool: list[tuple[dict[str, Any], Described]], started: list[FrozenTrial], rng: np.random.RandomState
) -> int:
    """The candidate farthest in log params from every trial so far (a random one for the first)."""
    have = np.array([math.log10(max(t.user_attrs["params"], 1)) for t in started if "params" in t.user_attrs])
    if not len(have):
        return int(rng.randint(len(pool)))
    mine = np.array([math.log10(max(d.counts.get("params", 1), 1)) for _, d in pool])
    gap = np.abs(mine[:, None] - have[None, :]).min(axis=1)
    ties = np.flatnonzero(gap >= gap.max() - 1e-12)
    return int(ties[rng.randint(len(ties))])


def _gains_to_the_end(complete: list[FrozenTrial]) -> dict[int, float]:
    """Epoch → the median accuracy gained from that epoch to the end, over trials trained to the end."""
    gains: dict[int, list[float]] = {}
    for t in complete:
        curve = t.user_attrs.get("curve") or {}
        final = t.user_attrs["accuracy"]
        for epoch, accuracy in curve.items():
            if accuracy is not None:
                gains.setdefault(int(epoch), []).append(final - accuracy)
    return {epoch: float(np.median(values)) for epoch, values in gains.items()}


def _accuracy(trial: FrozenTrial, gains: dict[int, float]) -> float:
    accuracy = float(trial.user_attrs["accuracy"])
    if is_stopped(trial):
        accuracy += gains.get(int(trial.user_attrs["stopped_at"]), 0.0)
    return accuracy


def _counts_of(trial: FrozenTrial) -> dict[str, float]:
    return {o: float(trial.user_attrs[o]) for o in ("params", "flops") if o in trial.user_attrs}


def _count_scales(
    pool: list[tuple[dict[str, Any], Described]],
    trials: list[FrozenTrial],
    limits: dict[str, float | None],
) -> dict[str, Callable[[float], float]]:
    """Each count on a log scale: 0 at the smallest seen, 1 at the space's limit (else a little past the
    largest seen)."""
    scales = {}
    for name in ("params", "flops"):
        seen = [d.counts[name] for _, d in pool if name in d.counts]
        seen += [t.user_attrs[name] for t in trials if name in t.user_attrs]
        if not seen:
            continue
        low, largest = math.log10(max(min(seen), 1)), math.log10(max(max(seen), 1))
        limit = limits.get(name)
        # The limit, else a tenth of the range past the largest: a point at the reference adds nothing.
        high = math.log10(limit) if limit and math.log10(limit) > largest else largest + 0.1 * max(largest - low, 0.1)
        span = high - low
        scales[name] = lambda value, low=low, span=span: (math.log10(max(value, 1)) - low) / span
    return scales


class _Encoder:
    """A point's features: each parameter in [0, 1] (ordered choices by rank, others one-hot; a value the
    point does not use at 0), then its log counts scaled as the hypervolume scales them."""

    def __init__(self, distributions: dict[str, BaseDistribution], scales: dict[str, Callable[[float], float]]):
        self.distributions, self.scales = distributions, scales

    def __call__(self, params: dict[str, Any], counts: dict[str, float]) -> list[float]:
        features: list[float] = []
        for name, d in self.distributions.items():
            value = params.get(name)
            if isinstance(d, CategoricalDistribution):
                choices = list(d.choices)
                ordered = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)
                if ordered:
                    rank = sorted(choices).index(value) if value in choices else None
                    features.append(0.0 if rank is None else (rank + 1) / len(choices))
                else:
                    features.extend(1.0 if value == c else 0.0 for c in choices)
            elif value is None:
                features.append(0.0)
            else:
                low, high = float(d.low), float(d.high)  # type: ignore[attr-defined]
                log = isinstance(d, FloatDistribution | optuna.distributions.IntDistribution) and d.log
                if log:
                    low, high, value = math.log(low), math.log(high), math.log(value)
                features.append((float(value) - low) / (high - low) if high > low else 0.5)
        features.extend(self.scales[name](counts[name]) if name in counts else 0.0 for name in sorted(self.scales))
        return features


def _fit(x: np.ndarray, y: np.ndarray, rng: np.random.RandomState) -> Any:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(np.ones(x.shape[1]), (1e-2, 1e2), nu=2.5) + WhiteKernel(
        1e-2, (1e-6, 1.0)
    )
    model = GaussianProcessRegressor(kernel, normalize_y=True, random_state=int(rng.randint(2**31)))
    with warnings.catch_warnings():  # a length scale at its bound on a few trials: expected, not news
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)


def _predict(model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = model.predict(x, return_std=True)
    return np.asarray(mean, dtype=float), np.maximum(np.asarray(std, dtype=float), 1e-9)


def _seconds(trials: list[FrozenTrial], work: list[float]) -> np.ndarray:
    """Predicted seconds of a full trial of each candidate: a line through the trained trials' recorded
    seconds against their work (FLOPs × images trained), fitted with non-negative coefficients; with
    fewer than two such trials, work relative to the candidates' median (plus one)."""
    from scipy.optimize import nnls

    rows = [
        (t.user_attrs["flops"] * t.user_attrs["images"], t.user_attrs["costs"]["fixed"]
         + sum(t.user_attrs["costs"]["train"]) + sum(t.user_attrs["costs"]["evaluate"]))
        for t in trials if "costs" in t.user_attrs and "images" in t.user_attrs and "flops" in t.user_attrs
    ]  # fmt: skip
    work_array = np.array(work, dtype=float)
    if len(rows) >= 2:
        a = np.array([[1.0, w] for w, _ in rows])
        (fixed, per_work), _ = nnls(a, np.array([s for _, s in rows]))
        if fixed + per_work * work_array.min() > 0:
            return np.maximum(fixed + per_work * work_array, 1e-6)
    return 1.0 + work_array / max(float(np.median(work_array)), 1e-12)


def cached(describe: Callable[[dict[str, Any]], Described | None]) -> Callable[[dict[str, Any]], Described | None]:
    """``describe`` remembering its last ``CACHED_POINTS`` answers (a finite space is counted once)."""
    memory: OrderedDict[tuple[tuple[str, Any], ...], Described | None] = OrderedDict()
    lock = threading.Lock()  # threads of one process (optimize(n_jobs), the simulator) share it

    def remembered(point: dict[str, Any]) -> Described | None:
        key = tuple(sorted(point.items()))
        with lock:
            if key in memory:
                memory.move_to_end(key)
                return memory[key]
        answer = describe(point)
        with lock:
            memory[key] = answer
            if len(memory) > CACHED_POINTS:
                memory.popitem(last=False)
        return answer

    return remembered


def space_view(space: Any, data: Any) -> SpaceView:
    """The ``SpaceView`` of a ``SearchSpace`` on a ``Dataset``: points described as a trial would build
    them (``SearchSpace.suggest``), counted, keyed and checked against the constraints."""
    from jumpsearch.counting import candidate_key, count
    from jumpsearch.errors import ConfigError
    from jumpsearch.training import steps_per_epoch

    failures: set[str] = set()

    def describe(point: dict[str, Any]) -> Described | None:
        trial = optuna.trial.FixedTrial(point)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                candidate = space.suggest(trial, data.input_shape, data.num_classes)
            if space.constraints.violation(candidate) is not None:
                return None
            counts = count(candidate.model)
        except ConfigError:
            return None
        except Exception as e:  # noqa: BLE001 (one point the model code refuses must not stop the search)
            kind = type(e).__name__  # the first of a kind is said: if every point fails, proposals are random
            log = logger.debug if kind in failures else logger.warning
            failures.add(kind)
            log("ehvi: cannot count point %s (left out of the proposals): %s: %s", point, kind, e)
            return None
        training = candidate.training
        images = training.epochs * training.repeats * steps_per_epoch(training, data) * training.batch_size
        return Described(candidate_key(candidate), {"params": counts.trainable, "flops": counts.macs},
                         float(counts.macs) * images, dict(trial.params))  # fmt: skip

    limits = {"params": space.constraints.max_params, "flops": space.constraints.max_flops}
    return SpaceView(space.distributions(), tuple(space.objectives), limits, cached(describe))
