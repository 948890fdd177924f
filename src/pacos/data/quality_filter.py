"""`pacos data filter`: keep the records whose quality score is at least --min-score (AlpaGasus kept Alpaca's
records rated >= 4.5 of 5), write them in the input's format, and draw the histogram of the scores."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pacos.data.formats import detect_format, load_records, save_records
from pacos.data.quality import BIN_WIDTH, MAX_SCORE, bin_label, describe_histogram, histogram, score_of
from pacos.errors import DataError
from pacos.options import ConfigError, check_fields, option


@dataclass
class FilterConfig:
    data: str = option(help="scored records (`pacos data score` output)", path=True)
    out: str = option(help="the records kept, in the input's format (written atomically)", path=True)
    min_score: float = option(4.5, "keep records scored at least this (AlpaGasus: 4.5)", ge=0, le=MAX_SCORE)
    keep_unscored: bool = option(False, "keep records without a score too (default: dropped and counted)")
    plot: str | None = option(None, "the histogram PNG (default: OUT's name + .scores.png)")
    no_plot: bool = option(False, "draw no histogram")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.plot and self.no_plot:
            raise ConfigError("--plot FILE and --no-plot: give one")

    @property
    def plot_path(self) -> Path | None:
        if self.no_plot:
            return None
        out = Path(self.out)
        return Path(self.plot) if self.plot else out.with_name(out.stem + ".scores.png")


@dataclass
class FilterSummary:
    out: str
    min_score: float
    kept: int
    dropped: int  # scored below --min-score
    unscored: int  # kept with --keep-unscored, else dropped too
    keep_unscored: bool
    scores: list[float]
    plot: str | None

    def describe(self) -> str:
        fate = "kept" if self.keep_unscored else "dropped"
        counts = (f"kept {self.kept} record(s) scored >= {self.min_score:g} into {self.out} | dropped "
                  f"{self.dropped} below it | unscored {self.unscored} ({fate})")
        lines = [counts, describe_histogram(self.scores)]
        if self.plot:
            lines.append(f"histogram: {self.plot}")
        return "\n".join(lines)


def filter_file(config: FilterConfig) -> FilterSummary:
    fmt = detect_format(config.data)
    records = load_records(config.data, fmt)
    kept, scores, dropped, unscored = [], [], 0, 0
    for record in records:
        score = score_of(record)
        if score is None:
            unscored += 1
            keep = config.keep_unscored
        else:
            scores.append(score)
            keep = score >= config.min_score
            dropped += not keep
        if keep:
            kept.append(record)
    save_records(kept, config.out, fmt="jsonl" if fmt == "self-instruct" else fmt)
    plot = config.plot_path
    if plot is not None:
        write_histogram(scores, plot, config.min_score, title=f"{Path(config.data).name}: {len(scores)} scored")
    return FilterSummary(str(config.out), config.min_score, len(kept), dropped, unscored, config.keep_unscored,
                         scores, str(plot) if plot else None)


def write_histogram(scores: list[float], path, threshold: float | None = None, title: str = "") -> None:
    """A bar per score bin, the threshold as a dashed line; written atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bins = histogram(scores)
    ax.bar([edge for edge, _ in bins], [n for _, n in bins], width=BIN_WIDTH * 0.9, align="edge")
    ax.set_xticks([edge + BIN_WIDTH / 2 for edge, _ in bins], [bin_label(edge) for edge, _ in bins],
                  fontsize="small", rotation=45)
    if threshold is not None:
        ax.axvline(threshold, color="grey", linestyle="--", linewidth=1, label=f"--min-score {threshold:g}")
        ax.legend(loc="upper left", fontsize="small")
    ax.set_xlabel("quality score (judge, 0-5)")
    ax.set_ylabel("records")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize="medium")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        os.replace(tmp, path)
    except OSError as e:
        raise DataError(f"{path}: cannot write ({e.strerror})") from None
    finally:
        tmp.unlink(missing_ok=True)
