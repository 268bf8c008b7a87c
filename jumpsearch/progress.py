"""The progress bar of a search: trials trained against the budget, the epochs they spent, the front,
and the epochs of the trials running now, whether they run in this process or in workers that only the
storage sees."""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from jumpsearch.records import counts_as_searched, is_duplicate, stored_space_of


class Tally:
    """What the bar shows, kept up to date by reading each finished trial once: configurations trained,
    epochs spent and the Pareto front. A refresh then costs the trials that changed since the last one
    (and one pass over the list the storage keeps), not a front of the whole study: flat at 10,000 trials."""

    def __init__(self, study: optuna.Study) -> None:
        self.seen: set[int] = set()
        self.searched = 0
        self.epochs = 0
        self.front: list[FrozenTrial] = []
        self.space = stored_space_of(study)
        self.signs = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in study.directions])
        self.lock = threading.Lock()

    def update(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """Take in the newly finished ``trials`` (of all the study's); returns those read this time."""
        with self.lock:  # two refreshes at once (a trial's end and the supervisor's timer) count each once
            return self._update(trials)

    def _update(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        from jumpsearch.schedule import nondominated

        new = [t for t in trials if t.state.is_finished() and t.number not in self.seen]
        for trial in new:
            self.seen.add(trial.number)
            self.searched += counts_as_searched(trial)
            self.epochs += trial.user_attrs.get("epochs", 0)
        ranked = [
            t for t in new
            if t.state == TrialState.COMPLETE and not is_duplicate(t)
            and (self.space is None or self.space.outside(t) is None)
        ]  # fmt: skip
        if ranked:
            merged = self.front + ranked
            keep = nondominated(np.array([t.values for t in merged], dtype=float) * self.signs)
            self.front = [t for t, k in zip(merged, keep, strict=True) if k]
        return new


class SearchBar:
    """A tqdm bar over trained trials; ``refresh`` reads the study, ``epoch`` reports one in this process."""

    def __init__(self, study: optuna.Study, budget: int) -> None:
        from tqdm.auto import tqdm

        self.study = study
        self.tally = Tally(study)
        self.tally.update(study.get_trials(deepcopy=False))
        self.bar: Any = tqdm(
            total=budget, initial=self.tally.searched, desc=study.study_name, unit="trial", file=sys.stderr
        )
        self.running: dict[int, str] = {}
        self.front_note = ""
        self.refresh(with_running=False)

    def refresh(self, with_running: bool = True) -> None:
        """Read newly finished trials, the front (and, for workers elsewhere, the epochs of running trials)."""
        trials = self.study.get_trials(deepcopy=False)
        self.tally.update(trials)
        best = self.tally.front
        if best:
            self.front_note = f"front {len(best)}, best acc {max(t.values[0] for t in best):.4f}"
        self.running = {}
        if with_running:
            self.running = {
                t.number: f"{len(t.user_attrs['curve'])}/{_epochs(t.user_attrs['config']['training'])}"
                for t in trials
                if t.state == TrialState.RUNNING and "curve" in t.user_attrs and "config" in t.user_attrs
            }
        self.bar.update(max(self.tally.searched - self.bar.n, 0))
        self._show()

    def epoch(self, trial: int, done: int, epochs: int) -> None:
        self.running = {trial: f"{done}/{epochs}"}
        self._show()

    def _show(self) -> None:
        running = ", ".join(f"trial {n} epoch {e}" for n, e in sorted(self.running.items()))
        spent = f"{self.tally.epochs} epochs spent"
        self.bar.set_postfix_str("; ".join(p for p in (spent, self.front_note, running) if p))

    def write(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _epochs(training: dict[str, Any]) -> int:
    """Epochs a trial trains: its budget, once per repeat."""
    return int(training["epochs"]) * int(training.get("repeats", 1))
