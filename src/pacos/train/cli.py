"""`pacos train` and `pacos merge`: the train flags are TrainConfig's fields (see pacos.options)."""

from __future__ import annotations

from pacos.options import add_options, from_args
from pacos.train.config import TrainConfig
from pacos.train.dry_run import PlanOptions


def register(sub) -> None:
    p = sub.add_parser("train", help="instruction fine-tuning or preference training (DPO), full or LoRA",
                       description="Fine-tune MODEL on DATA with the Alpaca recipe's defaults (--method sft), "
                                   "or on preference pairs with DPO (--method dpo).")
    add_options(p, TrainConfig)
    add_options(p, PlanOptions)
    p.set_defaults(func=_train)

    p = sub.add_parser("merge", help="merge a LoRA adapter into its base model's weights")
    p.add_argument("adapter", help="adapter directory written by `pacos train --lora`")
    p.add_argument("--out", required=True, help="directory for the merged model")
    p.set_defaults(func=_merge)


def _train(args) -> int:
    options = from_args(PlanOptions, args)
    if options.dry_run:  # planning needs no data and writes nothing: placeholders pass TrainConfig's checks
        from pacos.train.dry_run import dry_run

        dry_run(from_args(TrainConfig, args, data=args.data or ("-",), out=args.out or "-"), options)
        return 0
    config = from_args(TrainConfig, args)
    from pacos.train.distributed import launch, launched, report_worker_error

    if config.nproc > 1 and not launched():
        return launch(config, debug=args.debug)  # torchrun, each process running this command without --nproc
    if config.method == "dpo":
        from pacos.train.dpo import train_dpo as train
    else:
        from pacos.train.loop import train

    try:
        train(config)
    except Exception as e:
        report_worker_error(e, debug=args.debug)  # in a worker of --nproc: one line for the whole run
        raise
    return 0


def _merge(args) -> int:
    from pacos.train.merge import merge_adapter

    out = merge_adapter(args.adapter, args.out)
    print(f"merged {args.adapter} into {out}")
    return 0
