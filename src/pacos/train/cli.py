"""`pacos train` and `pacos merge`: flags map onto TrainConfig, defaults live there."""

from __future__ import annotations

from pacos.train.config import TrainConfig

_D = TrainConfig(model="", data="", out="")


def register(sub) -> None:
    p = sub.add_parser("train", help="instruction fine-tuning (full or LoRA) of a causal LM",
                       description="Fine-tune MODEL on DATA with the Alpaca recipe's defaults.")
    p.add_argument("--model", required=True, help="hub id or local path of the base model")
    p.add_argument("--data", required=True, help="alpaca json/jsonl, self-instruct, sharegpt or messages file")
    p.add_argument("--out", required=True, help="output directory (model or adapter, train_log.jsonl, loss curve)")
    p.add_argument("--template", choices=("alpaca", "vicuna", "chatml", "model"),
                   help="default: alpaca for instruction records, model (else vicuna) for conversations")
    p.add_argument("--epochs", type=float, default=_D.epochs)
    p.add_argument("--max-steps", type=int, default=_D.max_steps, help="stop after this many steps (overrides epochs)")
    p.add_argument("--lr", type=float, help="learning rate (default 2e-5 full, 3e-4 LoRA)")
    p.add_argument("--batch-size", type=int, default=_D.batch_size, help="per-device batch size")
    p.add_argument("--grad-accum", type=int, help="default: effective batch 128")
    p.add_argument("--max-len", type=int, default=_D.max_len)
    p.add_argument("--warmup-ratio", type=float, default=_D.warmup_ratio)
    p.add_argument("--weight-decay", type=float, default=_D.weight_decay)
    p.add_argument("--lr-scheduler", default=_D.lr_scheduler, help="transformers scheduler name (default cosine)")
    p.add_argument("--val-size", type=float, default=_D.val_size, help="validation share (<1) or count (>=1)")
    p.add_argument("--seed", type=int, default=_D.seed)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT/checkpoints")
    p.add_argument("--train-on-inputs", action="store_true", help="also take loss on the prompt")
    p.add_argument("--lora", action="store_true", help="train a LoRA adapter (peft) instead of all weights")
    p.add_argument("--lora-r", type=int, default=_D.lora_r)
    p.add_argument("--lora-alpha", type=int, default=_D.lora_alpha)
    p.add_argument("--lora-dropout", type=float, default=_D.lora_dropout)
    p.add_argument("--lora-target", default=_D.lora_target, help="comma-separated module names, or all-linear")
    p.add_argument("--save-every", type=float, default=_D.save_every,
                   help="checkpoint interval: steps, or a fraction (<1) of the run")
    p.add_argument("--eval-every", type=float, default=_D.eval_every)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = sub.add_parser("merge", help="merge a LoRA adapter into its base model's weights")
    p.add_argument("adapter", help="adapter directory written by `pacos train --lora`")
    p.add_argument("--out", required=True, help="directory for the merged model")
    p.set_defaults(func=_merge)


def _train(args) -> int:
    from pacos.train.loop import train

    config = TrainConfig(
        model=args.model, data=args.data, out=args.out, template=args.template, epochs=args.epochs,
        max_steps=args.max_steps, lr=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum,
        max_len=args.max_len, warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay,
        lr_scheduler=args.lr_scheduler, val_size=args.val_size, seed=args.seed, resume=args.resume,
        train_on_inputs=args.train_on_inputs, lora=args.lora, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout, lora_target=args.lora_target, save_every=args.save_every,
        eval_every=args.eval_every, progress=not args.no_progress,
    )
    train(config)
    return 0


def _merge(args) -> int:
    from pacos.train.merge import merge_adapter

    out = merge_adapter(args.adapter, args.out)
    print(f"merged {args.adapter} into {out}")
    return 0
