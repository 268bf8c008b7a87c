#!/usr/bin/env bash
# Each family's best network under each budget, trained with one recipe and several seeds: the test
# accuracies of benchmarks/ablation_fashion.md's family table. Needs the searched and confirmed studies
# of benchmarks/ablation_fashion.sh. A finished run is kept (its metrics file) and skipped when run again.
#   bash benchmarks/ablation_families.sh [DATA_DIR] [EPOCHS] [SEEDS] [BUDGETS]
#   bash benchmarks/ablation_families.sh /usr/share/datasets/fashion-mnist 15 "0 1" "25k"
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-/usr/share/datasets/fashion-mnist}
epochs=${2:-15}
seeds=${3:-"0 1"}
budgets=${4:-"25k 50k 100k"}
js=.venv/bin/jumpsearch
storage=benchmarks/ablation_fashion.log
out=benchmarks/ablation_fashion/families
mkdir -p $out
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

for budget in $budgets; do
    for family in jumpnet resnet_v2 densenet_bc sparsenet; do
        config=$out/$family-$budget.yaml
        # The network ranked first by confirm's longer runs (its front), not by the brief search.
        [ -f "$config" ] || $js export --storage $storage --study-name "ablation_fashion-$family" --by confirmed \
            --max-params "$budget" -k 1 --out "$config" || { echo "$family: nothing under $budget"; continue; }
        # One recipe for every family: the switches chosen on validation (benchmarks/recipe_switches.py,
        # and the 20-epoch runs for augmentation), weight averaging with its statistics estimated again.
        .venv/bin/python - "$config" <<'PY'
import sys, yaml
from pathlib import Path
path = Path(sys.argv[1])
document = yaml.safe_load(path.read_text())
document["recipe"].update(augment="on", label_smoothing=0.1, weight_decay=0.05, ema_momentum=0.999)
path.write_text(yaml.safe_dump(document, sort_keys=False))
PY
        for seed in $seeds; do
            metrics=$out/$family-$budget-seed$seed.json
            [ -f "$metrics" ] && continue
            # The same network and recipe trained under a smaller budget with this seed: the same run.
            same=$(.venv/bin/python - "$config" "$seed" <<'PY'
import sys, yaml
from pathlib import Path
config, seed = Path(sys.argv[1]), sys.argv[2]
mine = yaml.safe_load(config.read_text())
family = config.stem.rpartition("-")[0]
for other in sorted(config.parent.glob(f"{family}-*.yaml")):
    metrics = other.with_name(f"{other.stem}-seed{seed}.json")
    theirs = yaml.safe_load(other.read_text())
    keep = ("model", "training")
    if other != config and metrics.is_file() and theirs["recipe"] == mine["recipe"] and all(
            theirs["candidates"][0][k] == mine["candidates"][0][k] for k in keep):
        print(metrics)
        break
PY
)
            if [ -n "$same" ]; then
                echo "$family under $budget, seed $seed: the network trained as $(basename "$same")"
                cp "$same" "$metrics"
                continue
            fi
            stamp "$family under $budget, seed $seed, $epochs epochs"
            $js train "$config" --epochs "$epochs" --seed "$seed" --out "models/families/$family-$budget-seed$seed" \
                --data-dir "$data"
            cp "models/families/$family-$budget-seed$seed/metrics.json" "$metrics"
        done
    done
done
stamp done
