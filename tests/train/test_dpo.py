"""`pacos train --method dpo` on the tiny model: the pairs are tokenized as SFT and serving see them, the
chosen-minus-rejected log-probability margin (computed here, not read from TRL's logs) rises on held-out
pairs, a real `pacos feedback export --format dpo` file trains, and bad files fail in one line naming FILE:LINE."""

import json

import pytest
import torch

from pacos.data.preferences import PreferencePair, load_preferences
from pacos.data.records import Conversation, Example, Message
from pacos.errors import DataError
from pacos.models.loading import load_model
from pacos.prompting.encode import encode_prompt, encode_record
from pacos.prompting.templates import get_template
from pacos.train.config import TrainConfig

from ..conftest import run_pacos


WORDS = ["apple", "river", "stone", "cloud", "maple", "tiger", "lemon", "piano", "glass", "honey", "orbit", "candle",
         "forest", "silver", "button", "garden", "pepper", "rocket", "window", "yellow", "copper", "violet"]


def _pairs(words):
    """Chosen answers are lower case, rejected ones the same letters in upper case: a preference in style that
    carries over to words never trained on, with no difference in length."""
    pairs = []
    for i, w in enumerate(words):
        answer = f"{w} and {words[(i + 3) % len(words)]}"
        pairs.append(PreferencePair(Conversation([Message("user", f"Name two things, starting with {w}.")]),
                                    answer, answer.upper()))
    return pairs


def _margins(model, tokenizer, template, pairs):
    """Sum of log p(answer tokens | prompt) for chosen minus rejected, per pair, under the template."""
    from pacos.train.dpo import encode_pairs

    rows, _ = encode_pairs(pairs, tokenizer, template, max_len=512)
    model.eval()
    out = []
    with torch.no_grad():
        for row in rows:
            scores = []
            for answer in (row["chosen_ids"], row["rejected_ids"]):
                ids = torch.tensor([row["prompt_ids"] + answer])
                logp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
                targets = ids[0, 1:]
                token_logp = logp.gather(-1, targets[:, None])[:, 0]
                scores.append(float(token_logp[-len(answer):].sum()))
            out.append(scores[0] - scores[1])
    return out


def test_pairs_are_tokenized_like_sft_and_prompted_like_serving(tiny_tokenizer):
    from pacos.train.dpo import encode_pairs

    template = get_template("alpaca")
    pair = PreferencePair(Conversation([Message("user", "Say hi.")]), "hi there", "go away", "instruction")
    (row,), truncated = encode_pairs([pair], tiny_tokenizer, template, max_len=512)
    assert truncated == 0
    assert row["prompt_ids"] == encode_prompt(pair.context, tiny_tokenizer, template)  # what serving sends
    for answer, ids in (("hi there", row["chosen_ids"]), ("go away", row["rejected_ids"])):
        sft = encode_record(Example("Say hi.", "", answer), tiny_tokenizer, template, max_len=512)
        assert ids == [t for t, label in zip(sft.input_ids, sft.labels) if label != -100]  # what SFT trains
        assert row["prompt_ids"] + ids == sft.input_ids and ids[-1] == tiny_tokenizer.eos_token_id
    (short,), truncated = encode_pairs([pair], tiny_tokenizer, template, max_len=12)
    assert truncated == 1 and len(short["prompt_ids"]) + len(short["chosen_ids"]) <= 12
    assert short["chosen_ids"][-1] == tiny_tokenizer.eos_token_id  # a cut answer keeps its end


def test_margin_rises_on_held_out_pairs(tiny_model_dir, tmp_path):
    from pacos.train.dpo import train_dpo

    train_pairs, held_out = _pairs(WORDS[:16]), _pairs(WORDS[16:])
    model, tokenizer = load_model(tiny_model_dir)
    config = TrainConfig(model=str(tiny_model_dir), data="unused.jsonl", out=str(tmp_path / "dpo"), method="dpo",
                         max_steps=30, lr=1e-3, batch_size=8, grad_accum=1, warmup_ratio=0.0, save_every=1000,
                         progress=False, max_len=128)
    lines = []
    result = train_dpo(config, pairs=train_pairs, log=lines.append)
    template = get_template(json.loads((tmp_path / "dpo" / "pacos_train.json").read_text())["template"], tokenizer)
    before = _margins(model, tokenizer, template, held_out)
    trained, _ = load_model(tmp_path / "dpo")
    after = _margins(trained, tokenizer, template, held_out)
    mean_before, mean_after = sum(before) / len(before), sum(after) / len(after)
    print(f"held-out margin (nats, chosen - rejected): before {mean_before:.2f}, after {mean_after:.2f}; "
          f"per pair before {[round(m, 1) for m in before]} after {[round(m, 1) for m in after]}")
    assert result.steps == 30
    assert mean_after > mean_before + 5.0
    assert all(a > b for a, b in zip(after, before))
    assert all(m > 0 for m in after)
    rows = [json.loads(line) for line in (tmp_path / "dpo" / "train_log.jsonl").read_text().splitlines()]
    assert len([r for r in rows if "loss" in r]) == 30 and "reward_margin" in rows[-1]
    assert (tmp_path / "dpo" / "loss_curve.png").stat().st_size > 1000
    assert any("reference: a frozen copy" in line for line in lines)


def _feedback_export(tmp_path):
    from pacos.serve.feedback import FeedbackStore

    store = FeedbackStore(tmp_path / "feedback.sqlite3")
    meta = dict(model="tiny", revision="r0", template="vicuna", params={"temperature": 0.7})
    system = [{"role": "system", "content": "Answer briefly."}]
    for i, w in enumerate(WORDS[:6]):
        ctx = system + [{"role": "user", "content": f"Name a thing like {w}."}]
        store.record(response_id=f"a{i}", context=ctx, response=w.upper(), vote="down", **meta)
        store.record(response_id=f"b{i}", context=ctx, response=w, regenerated_from=f"a{i}", vote="up", **meta)
    store.record_comparison(comparison_id="c1", context=[{"role": "user", "content": "Say one word."}],
                            model_a="A", model_b="B", response_a="stone", response_b="STONE", vote="a")
    store.record_comparison(comparison_id="c2", context=[{"role": "user", "content": "Another word?"}],
                            model_a="A", model_b="B", response_a="x", response_b="y", vote="tie")
    out = tmp_path / "prefs.jsonl"
    proc = run_pacos("feedback", "export", tmp_path / "feedback.sqlite3", "--format", "dpo", "--out", out, check=True)
    assert "Traceback" not in proc.stderr
    return out


def test_a_feedback_export_trains_with_lora_through_the_cli(tiny_model_dir, tmp_path):
    prefs = _feedback_export(tmp_path)
    pairs = load_preferences(prefs)
    assert len(pairs) == 7 and pairs[0].context.system == "Answer briefly." and pairs[0].chosen == "apple"
    out = tmp_path / "lora"
    proc = run_pacos("train", "--method", "dpo", "--lora", "--lora-target", "all-linear", "--model", tiny_model_dir,
                     "--data", prefs, "--out", out, "--max-steps", "2", "--batch-size", "4", "--no-progress",
                     "--lr", "1e-3", check=True)
    assert "Traceback" not in proc.stderr and "FutureWarning" not in proc.stderr and "deprecated" not in proc.stderr
    assert "reference: the base model, adapter disabled" in proc.stdout
    assert f"data: {prefs} 7 read, 7 used" in proc.stdout
    run = json.loads((out / "pacos_train.json").read_text())
    assert run["config"]["method"] == "dpo" and run["pairs"] == 7 and run["steps"] == 2
    assert run["template"] in ("model", "vicuna") and run["config"]["lr"] == 1e-3
    assert (out / "adapter_model.safetensors").is_file() and not (out / "ref").exists()
    assert (out / "loss_curve.png").is_file()


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


GOOD = '{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}], ' \
       '"rejected": [{"role": "assistant", "content": "b"}]}'


@pytest.mark.parametrize("lines, where, message", [
    (['{"instruction": "q", "output": "a"}'], 1, "not a preference pair (instruction, output)"),
    ([GOOD, '{"prompt": "q", "chosen": "a"}'], 2, "no 'rejected'"),
    ([GOOD, GOOD, '{"prompt": "q", "chosen": "same", "rejected": "same"}'], 3, "chosen and rejected are the same"),
    (['{"prompt": [{"role": "assistant", "content": "q"}], "chosen": "a", "rejected": "b"}'], 1, "'prompt'"),
    (['{"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}'], 1, "one assistant message"),
    (['{"prompt": "q", "chosen": "", "rejected": "b"}'], 1, "empty 'chosen'"),
])
def test_bad_preference_files_name_file_and_line(tmp_path, lines, where, message):
    path = _write(tmp_path / "prefs.jsonl", lines)
    with pytest.raises(DataError) as e:
        load_preferences(path)
    assert str(e.value).startswith(f"{path}:{where}: ") and message in str(e.value)


def test_an_empty_file_and_the_cli_error_are_one_line(tmp_path, tiny_model_dir):
    empty = _write(tmp_path / "empty.jsonl", [])
    with pytest.raises(DataError, match="empty"):
        load_preferences(empty)
    alpaca = _write(tmp_path / "sft.jsonl", ['{"instruction": "q", "output": "a"}'])
    proc = run_pacos("train", "--method", "dpo", "--model", tiny_model_dir, "--data", alpaca, "--out", tmp_path / "o")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(f"{alpaca}:1: not a preference pair (instruction, output); "
                                                         "expected prompt/chosen/rejected, as `pacos feedback export "
                                                         "--format dpo` writes")


def test_sft_only_flags_are_refused_with_dpo():
    from pacos.options import ConfigError

    with pytest.raises(ConfigError, match="^--train-on-inputs is not available with --method dpo"):
        TrainConfig(model="m", data="d", out="o", method="dpo", train_on_inputs=True)
    assert TrainConfig(model="m", data="d", out="o", method="dpo", lora=True).learning_rate == 5e-6
    assert TrainConfig(model="m", data="d", out="o").learning_rate == 2e-5
