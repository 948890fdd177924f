"""Packing is exact: a packed record gets the logits and loss it gets alone, training packed is training padded."""

import json

import pytest
import torch

from pacos.data.formats import save_records
from pacos.data.synth import synth_records
from pacos.errors import PacosError
from pacos.models.loading import load_model
from pacos.options import ConfigError
from pacos.prompting.special_tokens import ensure_pad_token
from pacos.prompting.templates import get_template
from pacos.train.config import TrainConfig
from pacos.train.loop import encode_dataset, train
from pacos.train.packing import (
    PACKED_ATTENTION,
    choose_packing,
    packed_collator,
    padded_collator,
    packing_problem,
    use_packed_attention,
)

from ..conftest import run_pacos


@pytest.fixture(scope="module")
def rows(tiny_tokenizer):
    # Instruction records of different lengths; labels -100 on the prompts.
    records = synth_records(6, seed=11)
    encoded, _ = encode_dataset(records, tiny_tokenizer, get_template("alpaca"), 128, train_on_inputs=False)
    assert len({len(r["input_ids"]) for r in encoded}) > 1
    return encoded


def _model(path, attention="sdpa"):
    model, tokenizer = load_model(path, trainable=True)
    ensure_pad_token(tokenizer, model, add=True)
    model.set_attn_implementation(attention)
    model.eval()
    return model, tokenizer


def _token_losses(logits, labels):
    """Each position's next-token loss (0 where the next label is -100), and whether it counts."""
    shift_logits, shift_labels = logits[:-1], labels[1:]
    losses = torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="none")
    return losses, shift_labels != -100


def _forward(model, batch):
    with torch.no_grad():
        return model(**batch, use_cache=False).logits


@pytest.mark.parametrize("attention", [PACKED_ATTENTION, "sdpa", "eager"])
def test_each_packed_record_has_its_unpacked_loss(tiny_model_dir, rows, attention):
    # pacos's record-by-record attention, and transformers' own sdpa/eager (which read the restarting
    # position ids into a block-diagonal mask on CPU): every record's loss equals its loss alone.
    model, tokenizer = _model(tiny_model_dir)
    alone = []
    for r in rows:
        logits = _forward(model, {"input_ids": torch.tensor([r["input_ids"]])})[0]
        losses, counted = _token_losses(logits, torch.tensor(r["labels"]))
        alone.append(losses[counted].mean().item())
    padded = padded_collator(tokenizer)(rows)
    padded_logits = _forward(model, padded)
    padded_losses = []
    for i in range(len(rows)):
        losses, counted = _token_losses(padded_logits[i], padded["labels"][i])
        padded_losses.append(losses[counted].mean().item())

    if attention == PACKED_ATTENTION:
        use_packed_attention(model)
    else:
        model.set_attn_implementation(attention)
    batch = packed_collator()(rows)
    assert batch["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows))  # no padding at all
    logits = _forward(model, batch)[0]
    losses, counted = _token_losses(logits, batch["labels"][0])
    packed, start = [], 0
    for r in rows:
        n = len(r["input_ids"])
        # The record's positions n-1 predict its own tokens; its last position faces the next record's first
        # label, which the collator sets to -100.
        piece, mask = losses[start:start + n - 1], counted[start:start + n - 1]
        assert mask.sum().item() == sum(label != -100 for label in r["labels"][1:])
        packed.append(piece[mask].mean().item())
        start += n
    assert packed == pytest.approx(alone, rel=1e-5, abs=1e-6)
    assert padded_losses == pytest.approx(alone, rel=1e-5, abs=1e-6)
    # The step's loss is the token mean over all trained tokens, the same number either way.
    token_mean = losses[counted].mean().item()
    padded_all, padded_counted = zip(*(_token_losses(padded_logits[i], padded["labels"][i]) for i in range(len(rows))))
    assert token_mean == pytest.approx(torch.cat(padded_all)[torch.cat(padded_counted)].mean().item(), rel=1e-5)


def test_changing_one_record_leaves_the_other_records_logits(tiny_model_dir, rows):
    model, _ = _model(tiny_model_dir)
    use_packed_attention(model)
    first, second, third = rows[0], rows[1], rows[2]
    other = {"input_ids": first["input_ids"][:1] + first["input_ids"][:0:-1], "labels": first["labels"]}
    longer = {"input_ids": first["input_ids"] + first["input_ids"][1:20], "labels": first["labels"] + [-100] * 19}
    collate = packed_collator()
    base = _forward(model, collate([first, second, third]))[0, len(first["input_ids"]):]
    changed = _forward(model, collate([other, second, third]))[0, len(first["input_ids"]):]
    moved = _forward(model, collate([longer, second, third]))[0, len(longer["input_ids"]):]
    head_changed = _forward(model, collate([other, second, third]))[0, :len(first["input_ids"])]
    head_base = _forward(model, collate([first, second, third]))[0, :len(first["input_ids"])]
    assert not torch.allclose(head_changed, head_base)  # the change is real
    assert torch.equal(changed, base)  # bit for bit: nothing of record 1 reaches records 2 and 3
    torch.testing.assert_close(moved, base, rtol=1e-5, atol=1e-5)  # nor its length (positions restart)


def test_packing_is_off_where_the_attention_crosses_records(tiny_model_dir):
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    def leaky(module, query, key, value, attention_mask, **kwargs):  # one causal mask over the whole row
        return sdpa_attention_forward(module, query, key, value, None, **kwargs)

    AttentionInterface.register("leaky_test", leaky)
    ALL_MASK_ATTENTION_FUNCTIONS.register("leaky_test", sdpa_mask)
    model, _ = _model(tiny_model_dir)
    assert packing_problem(model) is None
    assert choose_packing(model, "auto", log=lambda *_: None) == (True, "sdpa")

    model, _ = _model(tiny_model_dir, attention="leaky_test")
    assert "crosses records" in packing_problem(model)
    said = []
    assert choose_packing(model, "auto", log=said.append) == (False, "leaky_test")
    assert "packing: off" in said[0] and model.config._attn_implementation == "leaky_test"
    with pytest.raises(PacosError, match="--packing on: .*crosses records"):
        choose_packing(model, "on", log=lambda *_: None)


def _config(model, data, out, **kw):
    base = dict(model=str(model), data=str(data), out=str(out), batch_size=4, grad_accum=2, max_len=128,
                progress=False, save_every=1000, warmup_ratio=0.0, lr=3e-3, seed=3)
    return TrainConfig(**{**base, **kw})


def _log(out):
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_packed_training_is_padded_training(tiny_model_dir, tiny_tokenizer, tmp_path):
    records = synth_records(24, seed=4)
    save_records(records, tmp_path / "d.jsonl", "jsonl")
    said = []
    train(_config(tiny_model_dir, tmp_path / "d.jsonl", tmp_path / "packed", epochs=1), log=said.append)
    train(_config(tiny_model_dir, tmp_path / "d.jsonl", tmp_path / "padded", epochs=1, packing="off"),
          log=lambda *_: None)
    assert any(line.startswith("packing: on") for line in said)
    packed, padded = _log(tmp_path / "packed"), _log(tmp_path / "padded")
    assert len(packed) == len(padded) == 3  # 24 records, 8 a step
    assert [r["loss"] for r in packed] == pytest.approx([r["loss"] for r in padded], rel=2e-4)
    # tokens/s counts real tokens: both runs saw exactly the records' tokens, no padding.
    encoded, _ = encode_dataset(records, tiny_tokenizer, get_template("alpaca"), 128, False)
    real = sum(len(r["input_ids"]) for r in encoded)
    assert packed[-1]["tokens_seen"] == padded[-1]["tokens_seen"] == real
    trained, _ = load_model(tmp_path / "packed")
    assert trained.config._attn_implementation == "sdpa"  # the saved model serves with its own attention


def test_speed_flags_train(tiny_model_dir, tmp_path):
    save_records(synth_records(16, seed=6), tmp_path / "d.jsonl", "jsonl")
    out = tmp_path / "flags"
    train(_config(tiny_model_dir, tmp_path / "d.jsonl", out, max_steps=2, packing="off", group_by_length=True,
                  bf16="on", gradient_checkpointing=True), log=lambda *_: None)
    assert [r["step"] for r in _log(out)] == [1, 2] and all(r["loss"] > 0 for r in _log(out))


@pytest.mark.parametrize("field,value,message", [
    ("packing", "yes", "--packing must be"), ("bf16", "true", "--bf16 must be")])
def test_bad_speed_setting_is_one_line_error(tiny_model_dir, tmp_path, field, value, message):
    with pytest.raises(ConfigError, match=message):
        _config(tiny_model_dir, tmp_path / "d.jsonl", tmp_path / "o", **{field: value})
    proc = run_pacos("train", "--model", tiny_model_dir, "--data", tmp_path / "d.jsonl", "--out", tmp_path / "o",
                     f"--{field.replace('_', '-')}", value)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "invalid choice" in proc.stderr
