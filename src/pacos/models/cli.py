"""`pacos model ...`: build offline preset models."""

from __future__ import annotations

from pacos.models.presets import PRESET_NAMES, PRESETS


def register(sub) -> None:
    model = sub.add_parser("model", help="build offline models")
    model.set_defaults(_parser=model)
    cmds = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    p = cmds.add_parser("init", help="build a LLaMA-architecture model with random weights and a local tokenizer")
    p.add_argument("--preset", choices=PRESET_NAMES, default="tiny",
                   help=", ".join(f"{name} {preset.note}" for name, preset in PRESETS.items()))
    p.add_argument("--out", required=True, help="directory to save the model to (Hugging Face layout)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_init)


def _init(args) -> int:
    from pacos.models.presets import init_model

    n = init_model(args.preset, args.out, seed=args.seed)
    print(f"saved {args.preset} model ({n / 1e6:.1f}M parameters) to {args.out}")
    return 0
