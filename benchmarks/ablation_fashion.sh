#!/usr/bin/env bash
# The ablation on Fashion-MNIST, search -> recipe -> train -> confirm, as benchmarks/ablation_fashion.md
# reports it. Each step resumes where it stopped (the studies live in benchmarks/ablation_fashion.log).
#   bash benchmarks/ablation_fashion.sh [DATA_DIR]      # about 2 hours on 2 CPU cores (measured steps: 23, 12, 41, 11+ min)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-/usr/share/datasets/fashion-mnist}
js=.venv/bin/jumpsearch
storage=benchmarks/ablation_fashion.log
out=benchmarks/ablation_fashion
families=(jumpnet resnet_v2 densenet_bc sparsenet)
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

stamp "1. the search: 10 trials for each family, the same recipe and stem"
$js ablate --space search_spaces/ablation_fashion.yaml --storage $storage --data-dir "$data" -q \
    --budgets 25k,50k,100k,250k --out $out

stamp "2. each family's most accurate network under 25K and under 100K weights, and the best of the four"
for family in "${families[@]}"; do
    for budget in 25k 100k; do
        $js export --storage $storage --study-name "ablation_fashion-$family" --max-params $budget -k 1 \
            --out "$out/$family-$budget.yaml" || true  # a family with nothing under the budget has no file
    done
done
.venv/bin/python - "$out" <<'EOF'
import shutil, sys, yaml
from pathlib import Path

out = Path(sys.argv[1])
for budget in ("25k", "100k"):
    files = sorted(out.glob(f"*-{budget}.yaml"))
    files = [f for f in files if not f.name.startswith("best-")]
    accuracy = {f: yaml.safe_load(f.read_text())["candidates"][0]["accuracy"] for f in files}
    best = max(accuracy, key=accuracy.get)
    shutil.copy(best, out / f"best-{budget}.yaml")
    print(f"under {budget}: {best.name} ({accuracy[best]:.4f}) of", {f.name: round(a, 4) for f, a in accuracy.items()})
EOF

stamp "3. the recipe: each switch against the baseline, on the validation split, with the best network under 25K"
.venv/bin/python benchmarks/recipe_switches.py $out/best-25k.yaml --epochs 6 --data-dir "$data" \
    --out benchmarks/recipe_switches.json
.venv/bin/python - "$out" <<'EOF'
import dataclasses, json, sys, yaml
from pathlib import Path
sys.path.insert(0, "benchmarks")
from recipe_switches import SWITCHES

runs = json.loads(Path("benchmarks/recipe_switches.json").read_text())["runs"]
baseline = max(r["val_accuracy"] for k, r in runs.items() if k.startswith("baseline,"))
kept = {}
for name, switch in SWITCHES.items():
    run = runs.get(f"{name}, seed 0")
    if name != "baseline" and run and run["val_accuracy"] > baseline:
        kept.update(switch)
print("switches kept (above every baseline seed):", kept or "none")
for path in Path(sys.argv[1]).glob("best-*.yaml"):
    document = yaml.safe_load(path.read_text())
    document["recipe"].update(kept)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
EOF

stamp "4. train the two picks on the 48,000 training images (the test split is read once, at the end):"
stamp "   one under 25K for 30 epochs, the one under 100K for 20 (on this CPU a 100K network takes up to 2 min an epoch)"
for budget in 25k 100k; do
    epochs=$([ $budget = 25k ] && echo 30 || echo 20)
    $js train $out/best-$budget.yaml --epochs "$epochs" --out models/fashion-best-$budget --data-dir "$data"
    cp models/fashion-best-$budget/metrics.json $out/trained-best-$budget.json  # the weights stay in models/
done

stamp "4b. the pick under 100K again: crop + flip on (20 epochs chose it on validation), weight averaging, 40 epochs"
sed -e 's/augment: .off./augment: '"'"'on'"'"'/' -e 's/ema_momentum: null/ema_momentum: 0.999/' $out/best-100k.yaml \
    > $out/best-100k-long.yaml
$js train $out/best-100k-long.yaml --epochs 40 --out models/fashion-best-100k-long --data-dir "$data"
cp models/fashion-best-100k-long/metrics.json $out/trained-best-100k-long.json

stamp "4c. the pick under 25K the same way: crop + flip, weight averaging, 40 epochs"
sed -e 's/augment: .off./augment: '"'"'on'"'"'/' -e 's/ema_momentum: null/ema_momentum: 0.999/' $out/best-25k.yaml \
    > $out/best-25k-long.yaml
$js train $out/best-25k-long.yaml --epochs 40 --out models/fashion-best-25k-long --data-dir "$data"
cp models/fashion-best-25k-long/metrics.json $out/trained-best-25k-long.json

stamp "5. confirm each family's front: 9 epochs of 60 batches (3x the search's), one seed"
for family in "${families[@]}"; do
    $js confirm --storage $storage --study-name "ablation_fashion-$family" --epochs 9 --seeds 1 --others 0 \
        --data-dir "$data"
done
stamp done
