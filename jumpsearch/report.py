"""One self-contained HTML page per study (plotly inlined: it opens with no network), and the
figures the study carries for optuna-dashboard."""

from __future__ import annotations

import html
import random
import warnings
from pathlib import Path

import optuna
import yaml

from jumpsearch.records import front, stopped, summary, trained
from jumpsearch.results import pareto_front
from jumpsearch.storage import require_jumpsearch_study

# Importances and parallel coordinates from at most this many trained trials, drawn at random. At
# 10,000 trials on a 2-core CPU, Optuna's importance plot deep-copies every trial once per parameter for
# its hover text (13 s for two objectives, even with trials holding parameters and values alone; 2 s at
# 2,000), and its parallel coordinates build a plotly trace per trial (4 s; 0.8 s at 2,000).
SAMPLED_TRIALS = 2000


def _objective_names(study: optuna.Study) -> list[str]:
    return list(study.user_attrs.get("objectives", ["accuracy", "params"]))[: len(study.directions)]


def front_figure(study: optuna.Study, x: str = "params"):  # -> plotly.graph_objects.Figure
    """Validation accuracy against params (or FLOPs); hovering a point shows its configuration. Trials
    the schedule stopped early show at the accuracy of the last rung they reached."""
    import plotly.graph_objects as go

    done = trained(study)
    on_front = {t.number for t in front(study)}
    figure = go.Figure()
    halted = sorted(stopped(study), key=lambda t: t.user_attrs[x])
    if halted:
        figure.add_trace(
            go.Scatter(
                x=[t.user_attrs[x] for t in halted],
                y=[t.user_attrs["accuracy"] for t in halted],
                mode="markers",
                name="stopped early",
                marker={"size": 6, "symbol": "x", "opacity": 0.5, "color": "grey"},
                text=[f"trial {t.number}, stopped at epoch {t.user_attrs['stopped_at']}" for t in halted],
                hovertemplate="%{text}<br>" + x + " %{x:,}<br>accuracy %{y:.4f}<extra></extra>",
            )
        )
    for is_front, name in ((False, "other trials"), (True, "Pareto front")):
        trials = sorted((t for t in done if (t.number in on_front) == is_front), key=lambda t: t.user_attrs[x])
        figure.add_trace(
            go.Scatter(
                x=[t.user_attrs[x] for t in trials],
                y=[t.values[0] for t in trials],
                mode="lines+markers" if is_front else "markers",
                line_shape="hv",
                name=name,
                marker={"size": 9 if is_front else 6, "opacity": 1.0 if is_front else 0.5},
                text=[
                    f"trial {t.number}<br>" + html.escape(str(t.user_attrs.get("config", {}).get("model")))
                    for t in trials
                ],
                hovertemplate="%{text}<br>" + x + " %{x:,}<br>accuracy %{y:.4f}<extra></extra>",
            )
        )
    figure.update_layout(
        title=f"{study.study_name}: validation accuracy against {x}", xaxis_title=x, yaxis_title="validation accuracy"
    )
    figure.update_xaxes(type="log")
    return figure


def confirmation_figure(study: optuna.Study):  # -> plotly.graph_objects.Figure | None
    """The search's accuracy (± its standard error) against the mean of ``confirm``'s longer runs
    (bars: the lowest and highest seed), with the line where they would agree; None before ``confirm``."""
    import plotly.graph_objects as go

    from jumpsearch.confirm import stored_confirmation

    confirmation = stored_confirmation(study)
    if confirmation is None:
        return None
    table = confirmation.table.dropna(subset=["mean"])
    seeds = table[[f"seed {s}" for s in range(confirmation.seeds)]]
    figure = go.Figure()
    for on_front, name in ((True, "Pareto front"), (False, "off the front")):
        part = table[table["front"] == on_front]
        runs = seeds.loc[part.index]
        figure.add_trace(
            go.Scatter(
                x=part["search"],
                y=part["mean"],
                mode="markers",
                name=name,
                error_x={"type": "data", "array": part["se"].fillna(0)},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": runs.max(axis=1) - part["mean"],
                    "arrayminus": part["mean"] - runs.min(axis=1),
                },  # fmt: skip
                text=[f"trial {n}, {p:,} params" for n, p in zip(part["trial"], part["params"], strict=True)],
                hovertemplate="%{text}<br>search %{x:.4f}<br>confirmed %{y:.4f}<extra></extra>",
            )
        )
    low = float(min(table["search"].min(), table["mean"].min()))
    high = float(max(table["search"].max(), table["mean"].max()))
    figure.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="equal", line={"dash": "dot"}))
    tau = "n/a" if confirmation.kendall_tau is None else f"{confirmation.kendall_tau:.2f}"
    figure.update_layout(
        title=f"Search accuracy against {confirmation.seeds} seeds at {confirmation.epochs} epochs"
        f"{' with a training recipe' if confirmation.recipe else ''} (Kendall tau {tau})",
        xaxis_title="search validation accuracy (± standard error)",
        yaxis_title="confirmed validation accuracy (mean; bars: seeds' range)",
    )
    return figure


def _curve(trial: optuna.trial.FrozenTrial) -> tuple[list[int], list[float]]:
    """(epochs, validation accuracy) of the trial's recorded learning curve, by epoch."""
    points = sorted((int(e), a) for e, a in trial.user_attrs["curve"].items() if a is not None)
    return [e for e, _ in points], [a for _, a in points]


def curves_figure(study: optuna.Study):  # -> plotly.graph_objects.Figure | None
    """Validation accuracy after each epoch, one line per trial that trained: front trials in colour, each
    its own trace; other trials trained to the end in grey, trials the schedule stopped dotted, ending
    where they stopped, each kind one trace of lines broken between trials (a trace per trial costs about
    a millisecond to build, and more to draw, at thousands of trials). None when no trial recorded a
    curve."""
    import plotly.graph_objects as go

    on_front = {t.number for t in front(study)}
    shown = sorted((t for t in [*trained(study), *stopped(study)] if t.user_attrs.get("curve")), key=lambda t: t.number)
    if not shown:
        return None
    figure = go.Figure()
    others: dict[str, tuple[list, list, list]] = {"trained": ([], [], []), "stopped early": ([], [], [])}
    for trial in (t for t in shown if t.number not in on_front):
        kind = "stopped early" if "stopped_at" in trial.user_attrs else "trained"
        epochs, accuracy = _curve(trial)
        x, y, text = others[kind]  # a None between two trials breaks the line
        x += [*epochs, None]
        y += [*accuracy, None]
        text += [f"trial {trial.number} ({kind}), {trial.user_attrs.get('params', 0):,} params"] * len(epochs) + [None]
    for (kind, (x, y, text)), dash in zip(others.items(), (None, "dot"), strict=True):
        if x:
            figure.add_trace(
                go.Scatter(
                    x=x, y=y, hovertext=text, mode="lines+markers", marker={"size": 4}, name=kind,
                    line={"color": "#bbb", "dash": dash}, connectgaps=False,
                )
            )  # fmt: skip
    for trial in (t for t in shown if t.number in on_front):  # drawn last, on top
        epochs, accuracy = _curve(trial)
        figure.add_trace(
            go.Scatter(
                x=epochs, y=accuracy, mode="lines+markers", marker={"size": 4}, name=f"trial {trial.number}",
                hovertext=f"trial {trial.number} (front), {trial.user_attrs.get('params', 0):,} params",
            )
        )  # fmt: skip
    figure.update_layout(xaxis_title="epochs trained", yaxis_title="validation accuracy", hovermode="closest")
    return figure


def _sample(study: optuna.Study) -> tuple[optuna.Study, str]:
    """A study in memory holding what importances and parallel coordinates read of the trials trained to
    the end, each configuration once: their parameters and values (whole trials, with all that jumpsearch
    records, take seconds to deep-copy at a thousand trials). All of them, or SAMPLED_TRIALS drawn at random
    (the same draw from the same trials); and a note for the titles saying which. Importances read only
    the parameters every trial of the sample holds: after a space edited on resume, a sample may lack the
    few trials without one, and rank it where the whole study would not."""
    done = trained(study)
    note = ""
    if len(done) > SAMPLED_TRIALS:
        note = f" ({SAMPLED_TRIALS:,} of the {len(done):,} trials trained to the end, drawn at random)"
        done = sorted(random.Random(0).sample(done, SAMPLED_TRIALS), key=lambda t: t.number)
    sample = optuna.create_study(directions=study.directions)
    sample.add_trials(
        [optuna.trial.create_trial(values=t.values, params=t.params, distributions=t.distributions) for t in done]
    )
    return sample, note


def _figures(study: optuna.Study) -> list[tuple[str, object]]:
    import optuna.visualization as vis

    names = _objective_names(study)
    figures: list[tuple[str, object]] = [
        ("Pareto front: accuracy against params", front_figure(study, "params")),
        ("Accuracy against FLOPs", front_figure(study, "flops")),
        (
            "Optimization history (accuracy)",
            vis.plot_optimization_history(study, target=lambda t: t.values[0], target_name="accuracy"),
        ),
    ]
    sample, drawn = _sample(study)
    for i, name in enumerate(names):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figure = vis.plot_param_importances(sample, target=lambda t, i=i: t.values[i], target_name=name)
        except (ValueError, RuntimeError) as e:  # too few trials, or no parameter varies
            figure = f"Importances for {name} need more varied completed trials ({e})."
        figures.append((f"Hyperparameter importances for {name}{drawn}", figure))
    confirmed = confirmation_figure(study)
    if confirmed is not None:
        figures.insert(1, ("Does the front hold up? Search against confirmed accuracy", confirmed))
    curves = curves_figure(study)
    if curves is not None:
        figures.insert(1, ("Learning curves: validation accuracy after each epoch", curves))
    figures.append(
        (
            f"Parallel coordinates (accuracy){drawn}",
            vis.plot_parallel_coordinate(sample, target=lambda t: t.values[0], target_name="accuracy"),
        )
    )
    return figures


def write_report(study: optuna.Study, path: str | Path) -> Path:
    """Write the study's report: the fronts against params and FLOPs, history, importances for each
    objective, parallel coordinates, the front as a table, and the space the study searched. Refuses a
    study that jumpsearch did not make."""
    require_jumpsearch_study(study)
    path = Path(path)
    sections = []
    first = True
    for title, figure in _figures(study):
        if isinstance(figure, str):
            body = f"<p>{html.escape(figure)}</p>"
        else:
            body = figure.to_html(full_html=False, include_plotlyjs="inline" if first else False)
            first = False
        sections.append(f"<h2>{html.escape(title)}</h2>\n{body}")
    table = pareto_front(study)
    table_html = "<p>No completed trial yet.</p>" if table.empty else table.to_html(index=False, border=0)
    space = yaml.safe_dump(study.user_attrs.get("space", {}), sort_keys=False)
    everything = len(study.get_trials(deepcopy=False))
    document = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>jumpsearch report: {html.escape(study.study_name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse}}
td,th{{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd}}</style></head>
<body><h1>jumpsearch report: {html.escape(study.study_name)}</h1>
<p>{html.escape(summary(study))}; {everything} trials in all, {len(front(study))} on the Pareto front.
Accuracy is validation accuracy;
params are trainable weights; FLOPs are multiply-accumulates of one forward pass.</p>
<h2>The front</h2>{table_html}
{"".join(sections)}
<h2>Search space</h2><pre>{html.escape(space)}</pre>
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document)
    return path


def annotate_for_dashboard(study: optuna.Study) -> None:
    """Save the front's plot (and, after ``confirm``, search against confirmed accuracy) in the study,
    so that optuna-dashboard shows them beside the trials (the study's note holds its space file)."""
    import optuna_dashboard

    if front(study):
        optuna_dashboard.save_plotly_graph_object(study, front_figure(study), graph_object_id="pareto-front")
    confirmed = confirmation_figure(study)
    if confirmed is not None:
        optuna_dashboard.save_plotly_graph_object(study, confirmed, graph_object_id="confirmation")
