"""`pacos self-instruct ...` (generate or resume) and `pacos self-instruct report`: parsing only."""

from __future__ import annotations

import argparse
import os

from pacos.errors import PacosError
from pacos.options import add_options, from_args


def register(sub: argparse._SubParsersAction) -> None:
    from pacos.remote.config import TeacherConfig
    from pacos.self_instruct.config import SelfInstructConfig

    p = sub.add_parser(
        "self-instruct", help="generate instruction data from seed tasks with a teacher model (resumable)",
        description="Generate Alpaca-style instruction data with any OpenAI-compatible teacher. Rerunning the "
                    "same command resumes. `pacos self-instruct report OUT.jsonl` summarises a run.",
    )
    p.set_defaults(func=_generate, _parser=p)
    add_options(p.add_argument_group("teacher"), TeacherConfig)
    add_options(p.add_argument_group("generation"), SelfInstructConfig, exclude=("teacher",))

    cmds = p.add_subparsers(dest="self_instruct_command", metavar="[report]")
    r = cmds.add_parser("report", help="plots and a markdown summary of a run")
    r.add_argument("file", help="the run's OUT.jsonl (its OUT.raw.jsonl is read too when present)")
    r.add_argument("--out", dest="report_dir", help="folder for report.md and PNGs (default: FILE's stem + _report)")
    r.set_defaults(func=_report)


def _generate(args) -> int:
    from pacos.remote.config import OPENAI_URL, TeacherConfig
    from pacos.self_instruct.config import SelfInstructConfig
    from pacos.self_instruct.loop import generate

    teacher = from_args(TeacherConfig, args, api_key=args.api_key or os.environ.get("OPENAI_API_KEY"))
    config = from_args(SelfInstructConfig, args, teacher=teacher)
    if not teacher.api_key and teacher.url.rstrip("/") == OPENAI_URL:
        raise PacosError("no API key for OpenAI: pass --api-key or set OPENAI_API_KEY (or point --teacher-url "
                         "at another server)")
    print(generate(config))
    return 0


def _report(args) -> int:
    from pacos.self_instruct.report import write_report

    print(write_report(args.file, args.report_dir))
    return 0
