"""`pacos eval report JUDGEMENTS... | --human DB`: flags generated from ReportConfig; the work is in pacos.eval.report."""

from __future__ import annotations

from pacos.errors import PacosError
from pacos.eval.report import ReportConfig
from pacos.options import add_options, from_args


def register(cmds) -> None:
    p = cmds.add_parser("report", help="win rates with 95%% CIs, length-controlled win rates, grades and a "
                                       "Bradley-Terry leaderboard from judgements or human votes")
    p.add_argument("judgements", nargs="*", metavar="JUDGEMENTS",
                   help="judgements files from `pacos eval judge` (JSONL or a JSON array)")
    add_options(p, ReportConfig)
    p.set_defaults(func=_report)


def _report(args) -> int:
    import json

    from pacos.eval.report import build_report
    from pacos.eval.report_markdown import format_report
    from pacos.eval.report_rows import Judgements, human_judgements, read_judgements

    config = from_args(ReportConfig, args)
    if config.human and args.judgements:
        raise PacosError("give judgements files or --human DB (one source per report)")
    rows = None  # only --tasks/--perplexity
    if config.human:
        from pacos.serve.feedback import FeedbackStore

        rows = human_judgements(FeedbackStore(config.human, create=False).comparisons(), str(config.human))
    elif args.judgements:
        rows = read_judgements(args.judgements)
    report = build_report(rows, config)
    plots = []
    if config.plots:
        from pacos.eval.report_plots import write_plots

        plots = write_plots(report, rows or Judgements(), config.plots)
    import os

    # The Markdown links the plots relative to where it is written.
    links = [os.path.relpath(p, os.path.dirname(os.path.abspath(config.out))) if config.out else p for p in plots]
    text = format_report(report, links)
    if config.out:
        _write_text(str(config.out), text)
    if config.json:
        print(json.dumps({**report, "plots": plots}, indent=2, ensure_ascii=False))
    elif not config.out:
        print(text)
    return 0


def _write_text(path: str, text: str) -> None:
    """Write `text` to a temp file beside `path` and rename it over `path`: never a half-written report."""
    import os

    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise PacosError(f"{path}: cannot write the report ({e.strerror})") from None
