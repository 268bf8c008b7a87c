"""The progress bar of a search: trials trained against the budget, the epochs they spent, the front,
and the epochs of the trials running now, whether they run in this process or in workers that only the
storage sees."""

from __future__ import annotations

import sys
from typing import Any

import optuna
from optuna.trial import TrialState

from jumpsearch.records import front, searched


class SearchBar:
    """A tqdm bar over trained trials; ``refresh`` reads the study, ``epoch`` reports one in this process."""

    def __init__(self, study: optuna.Study, budget: int) -> None:
        from tqdm.auto import tqdm

        self.study = study
        self.bar: Any = tqdm(
            total=budget, initial=searched(study), desc=study.study_name, unit="trial", file=sys.stderr
        )
        self.running: dict[int, str] = {}
        self.front_note = ""
        self.epochs = 0
        self.refresh(with_running=False)

    def refresh(self, with_running: bool = True) -> None:
        """Read trained trials and the front (and, for workers elsewhere, the epochs of running trials)."""
        done = searched(self.study)
        best = front(self.study)
        self.epochs = sum(t.user_attrs.get("epochs", 0) for t in self.study.get_trials(deepcopy=False))
        if best:
            self.front_note = f"front {len(best)}, best acc {max(t.values[0] for t in best):.4f}"
        self.running = {}
        if with_running:
            self.running = {
                t.number: f"{len(t.user_attrs['curve'])}/{_epochs(t.user_attrs['config']['training'])}"
                for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if "curve" in t.user_attrs and "config" in t.user_attrs
            }
        self.bar.update(max(done - self.bar.n, 0))
        self._show()

    def epoch(self, trial: int, done: int, epochs: int) -> None:
        self.running = {trial: f"{done}/{epochs}"}
        self._show()

    def _show(self) -> None:
        running = ", ".join(f"trial {n} epoch {e}" for n, e in sorted(self.running.items()))
        spent = f"{self.epochs} epochs spent"
        self.bar.set_postfix_str("; ".join(p for p in (spent, self.front_note, running) if p))

    def write(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _epochs(training: dict[str, Any]) -> int:
    """Epochs a trial trains: its budget, once per repeat."""
    return int(training["epochs"]) * int(training.get("repeats", 1))
