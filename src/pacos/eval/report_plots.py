"""The report's PNG plots: win rates with their intervals, and length difference against preference."""

from __future__ import annotations

import os

from pacos.errors import DataError
from pacos.eval.report_rows import Judgements


def write_plots(report: dict, rows: Judgements, folder) -> list[str]:
    """Write win_rates.png and length_preference.png (when there are pairwise results) and task_accuracy.png
    (when there are --tasks results) into `folder`; their paths."""
    figures = []
    if report["pairwise"]:
        figures += [("win_rates.png", lambda: _win_rates(report)),
                    ("length_preference.png", lambda: _length_preference(report, rows))]
    if report.get("tasks"):
        figures.append(("task_accuracy.png", lambda: _task_accuracy(report["tasks"])))
    if not figures:
        return []
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise DataError(f"{folder}: cannot make the plots folder ({e.strerror})") from None
    paths = []
    for name, draw in figures:
        paths.append(os.path.join(folder, name))
        _save(draw(), paths[-1])
    return paths


def _save(fig, path: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    except OSError as e:
        raise DataError(f"{path}: cannot write ({e.strerror})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _figure(width: float, height: float):
    # A Figure on the Agg canvas directly: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _win_rates(report: dict):
    pairs = report["pairwise"]
    fig = _figure(7, 1.2 + 0.6 * len(pairs))
    ax = fig.add_subplot()
    for offset, (name, get) in ((-0.15, ("win rate", lambda p: p["win_rate"])),
                                (0.15, ("length-controlled", lambda p: (p["length_controlled"] or {}).get("win_rate")))):
        ys, xs, lo, hi = [], [], [], []
        for i, p in enumerate(pairs):
            e = get(p)
            if e:
                ys.append(i + offset)
                xs.append(100 * e["value"])
                lo.append(100 * (e["value"] - e["low"]))
                hi.append(100 * (e["high"] - e["value"]))
        if xs:
            ax.errorbar(xs, ys, xerr=[lo, hi], fmt="o", capsize=4, label=name)
    ax.axvline(50, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(pairs)), [p["model"] for p in pairs])
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel(f"% against {report['baseline']} (ties half), 95% bootstrap CI")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def _length_preference(report: dict, rows: Judgements):
    import numpy as np
    from scipy.special import expit

    from pacos.eval.report import orient

    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    baseline = report["baseline"]
    for p in report["pairwise"]:
        oriented = [orient(r, p["model"]) for r in rows.pairwise if {r.model_a, r.model_b} == {p["model"], baseline}]
        delta = np.array([o.length - o.baseline_length for o in oriented], dtype=float)
        points = ax.scatter(delta, [o.preference for o in oriented], alpha=0.35, s=14, label=p["model"])
        lc = p["length_controlled"]
        if lc and lc["sigma"] > 0:
            grid = np.linspace(delta.min(), delta.max(), 200)
            ax.plot(grid, expit(lc["intercept"] + lc["length_coef"] * np.tanh(grid / lc["sigma"])),
                    color=points.get_facecolor()[0][:3])
    ax.axvline(0, color="grey", linestyle="--", linewidth=1)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(f"answer length minus {baseline}'s (characters)")
    ax.set_ylabel("preference for the model (1 = won)")
    ax.set_title("Length against preference, with the length-control fit")
    ax.legend(fontsize="small")
    return fig


def _task_accuracy(tasks: list[dict]):
    fig = _figure(7, 1.2 + 0.5 * len(tasks))
    ax = fig.add_subplot()
    e = [t["accuracy"] for t in tasks]
    ax.errorbar([100 * x["value"] for x in e], range(len(tasks)), fmt="o", capsize=4,
                xerr=[[100 * (x["value"] - x["low"]) for x in e], [100 * (x["high"] - x["value"]) for x in e]])
    ax.set_yticks(range(len(tasks)), [f"{t['model']} (n={t['n']})" for t in tasks])
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("exact-match accuracy (%), 95% Wilson CI")
    return fig
