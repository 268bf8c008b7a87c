"""Which of ``train``'s recipe switches help one network, measured on the validation split only.

    .venv/bin/python benchmarks/recipe_switches.py under25k.yaml --epochs 6 \\
        --data-dir /usr/share/datasets/fashion-mnist           # 7 runs; about 25 minutes on 2 cores

Trains the exported configuration (``--index``) with the baseline recipe (``Recipe()``: cosine-decayed
rate, random crop and flip on natural images) and with one switch changed at a time, for ``--epochs``
each, and prints each run's validation accuracy against the baseline's. The baseline trains with every
seed of ``--baseline-seeds``: the spread between its seeds is the noise a switch must clear. The test
split is dropped before training: a recipe is chosen on validation accuracy, and the test split is read
once, by ``jumpsearch train`` on the model chosen in the end. Results are merged into ``--out`` (JSON)
run by run, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import machine  # noqa: E402  (imports TensorFlow quietly, as the CLI does)

from jumpsearch import exported_data, exported_recipe, load_configs, load_dataset, train_final  # noqa: E402
from jumpsearch.config import DataConfig  # noqa: E402

SWITCHES: dict[str, dict] = {
    "baseline": {},
    "no augmentation": {"augment": "off"},
    "label smoothing 0.1": {"label_smoothing": 0.1},
    "random erasing 0.5": {"random_erasing": 0.5},
    "weight decay 0.05": {"weight_decay": 0.05},
    "weight averaging 0.999": {"ema_momentum": 0.999},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", help="a file written by jumpsearch export")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--baseline-seeds", type=int, default=2, help="seeds of the baseline (the others: seed 0)")
    parser.add_argument("--switches", default=",".join(SWITCHES), help="comma-separated, of: " + ", ".join(SWITCHES))
    parser.add_argument("--data-dir")
    parser.add_argument("--out", default=str(Path(__file__).with_name("recipe_switches.json")))
    args = parser.parse_args()

    candidate = load_configs(args.config)[args.index]
    data = load_dataset(exported_data(args.config) or DataConfig(), args.data_dir)
    data = dataclasses.replace(data, x_test=None, y_test=None)  # chosen on validation: never read the test split
    base = exported_recipe(args.config)
    out = Path(args.out)
    done = json.loads(out.read_text()) if out.is_file() else {}
    if done.get("candidate") not in (None, candidate.to_dict()) or done.get("epochs", args.epochs) != args.epochs:
        sys.exit(f"{out}: holds runs of another configuration or epochs; pass another --out")
    done.update(machine=machine(), candidate=candidate.to_dict(), epochs=args.epochs, data=data.name)
    runs = done.setdefault("runs", {})
    for name in args.switches.split(","):
        if name not in SWITCHES:
            sys.exit(f"--switches: unknown switch {name!r} (known: {', '.join(SWITCHES)})")
        recipe = dataclasses.replace(base, **SWITCHES[name])
        for seed in range(args.baseline_seeds if name == "baseline" else 1):
            key = f"{name}, seed {seed}"
            if key in runs:
                continue
            with tempfile.TemporaryDirectory() as folder:
                result = train_final(candidate, data, folder, epochs=args.epochs, recipe=recipe, seed=seed, verbose=0)
            runs[key] = {"val_accuracy": result.val_accuracy, "seconds": result.train_seconds}
            runs[key]["recipe"] = recipe.to_dict()
            print(f"{key}: validation accuracy {result.val_accuracy:.4f} in {result.train_seconds:.0f} s", flush=True)
            out.write_text(json.dumps(done, indent=2) + "\n")

    baseline = [r["val_accuracy"] for k, r in runs.items() if k.startswith("baseline,")]
    mean = statistics.fmean(baseline)
    print(f"\n{data.name}, {args.epochs} epochs, {done['machine']['cpu']}")
    print(f"baseline: {mean:.4f} (seeds {', '.join(f'{b:.4f}' for b in baseline)})\n")
    print("| recipe | validation accuracy | vs baseline mean | clears the baseline's seeds | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for key, run in runs.items():
        gain = run["val_accuracy"] - mean
        clears = "" if key.startswith("baseline,") else ("yes" if run["val_accuracy"] > max(baseline) else "no")
        print(f"| {key} | {run['val_accuracy']:.4f} | {gain:+.4f} | {clears} | {run['seconds']:.0f} |")


if __name__ == "__main__":
    main()
