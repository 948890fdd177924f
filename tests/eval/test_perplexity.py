"""`pacos perplexity`: the figures against torch's own cross-entropy and KL, the windows, the masks, references,
adapters, batching, the CLI's JSON and its one-line errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacos.cli import main
from pacos.data.formats import load_records, save_records
from pacos.data.synth import synth_records
from pacos.eval.perplexity import (
    PerplexityConfig,
    kl_divergence,
    measure_perplexity,
    text_windows,
    top1_agreement,
)
from pacos.eval.perplexity_scorers import TransformersScorer
from pacos.models.loading import load_model
from pacos.prompting.encode import IGNORE_INDEX, encode_record, leading_special_ids
from pacos.prompting.templates import get_template
from tests.data.test_fuzz import json_ish_files  # the data loaders' own fuzz inputs

TEXT = ("Alpacas are kept in herds that graze on level heights of the Andes. They are smaller than llamas, and "
        "unlike them were not bred to be working animals, but were bred for their fibre. ") * 6


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


@pytest.fixture(scope="module")
def records_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synth.jsonl"
    save_records(synth_records(12, seed=3), path, "jsonl")
    return path


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "alpacas.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory):
    """The tiny architecture with other random weights (the same vocabulary)."""
    from pacos.models.presets import init_model

    path = tmp_path_factory.mktemp("models") / "tiny-seed1"
    init_model("tiny", path, seed=1)
    return path


def measure(model_dir, data, **kw):
    return measure_perplexity(str(model_dir), PerplexityConfig(data=str(data), progress=False, **kw))


def mean_cross_entropy(model, sequences: list[tuple[list[int], list[int]]]) -> float:
    """exp-able mean NLL computed the training way: shifted labels, -100 ignored, one forward per sequence."""
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, labels in sequences:
            logits = model(torch.tensor([ids])).logits[0]
            targets = torch.tensor(labels[1:])
            total += float(F.cross_entropy(logits[:-1], targets, ignore_index=IGNORE_INDEX, reduction="sum"))
            count += int((targets != IGNORE_INDEX).sum())
    return total / count


def encoded_records(tokenizer, path, ctx=512):
    template = get_template(None, tokenizer, "instruction")
    return [encode_record(r, tokenizer, template, max_len=ctx) for r in load_records(path)]


def test_records_perplexity_is_exp_of_torch_cross_entropy(model, tiny_model_dir, records_file):
    hf, tokenizer = model
    encoded = encoded_records(tokenizer, records_file)
    expected = mean_cross_entropy(hf, [(e.input_ids, e.input_ids) for e in encoded])
    result = measure(tiny_model_dir, records_file)
    assert result["windows"] == len(encoded)
    assert result["tokens"] == sum(len(e.input_ids) - 1 for e in encoded)
    assert result["nll"] == pytest.approx(expected, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)


def test_responses_score_exactly_the_trained_tokens(model, tiny_model_dir, records_file):
    hf, tokenizer = model
    encoded = encoded_records(tokenizer, records_file, ctx=40)
    assert any(e.truncated for e in encoded)  # the masks of cut records count too
    result = measure(tiny_model_dir, records_file, responses=True, ctx=40)
    assert result["tokens"] == sum(sum(label != IGNORE_INDEX for label in e.labels[1:]) for e in encoded)
    assert result["tokens"] < sum(len(e.input_ids) - 1 for e in encoded)
    # The training loss itself: cross-entropy over the labels encode_record gives.
    assert result["nll"] == pytest.approx(mean_cross_entropy(hf, [(e.input_ids, e.labels) for e in encoded]),
                                          rel=1e-5)


def test_text_windows_layout():
    ids = list(range(100, 190))  # 90 text tokens
    windows = text_windows(ids, ctx=16, lead=[1])
    # Consecutive, non-overlapping: BOS + 15 text tokens each; the 6th window (BOS + 0 tokens) can't exist, and a
    # last one of BOS + 0..7 tokens reaches no position >= 8, so it is dropped: here 90 = 6 * 15 exactly.
    assert [w.ids[0] for w in windows] == [1] * 6
    assert [t for w in windows for t in w.ids[1:]] == ids
    for w in windows:
        assert len(w.ids) == 16 and w.scored == [i >= 8 for i in range(16)]
    short_tail = text_windows(ids + [7, 8, 9], ctx=16, lead=[1])  # BOS + 3 tokens: nothing at >= 8, dropped
    assert len(short_tail) == 6
    long_tail = text_windows(ids + list(range(10)), ctx=16, lead=[1])  # BOS + 10: positions 8..10 scored
    assert len(long_tail) == 7 and long_tail[-1].n_scored == 3
    assert [w.ids for w in text_windows(list(range(8)), ctx=4)] == [[0, 1, 2, 3], [4, 5, 6, 7]]  # no BOS (Qwen)
    assert text_windows([5], ctx=4, lead=[1]) == []


def test_text_perplexity_scores_second_halves(model, tiny_model_dir, text_file):
    hf, tokenizer = model
    ctx = 64
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    lead = leading_special_ids(tokenizer)
    assert lead == [tokenizer.bos_token_id]
    body = ctx - len(lead)
    sequences = []
    for start in range(0, len(ids), body):
        window = lead + ids[start:start + body]
        if len(window) > ctx // 2:
            sequences.append((window, [IGNORE_INDEX] * (ctx // 2) + window[ctx // 2:]))
    result = measure(tiny_model_dir, text_file, ctx=ctx)
    assert result["windows"] == len(sequences) > 3
    assert result["tokens"] == sum(len(w) - ctx // 2 for w, _ in sequences)
    assert result["nll"] == pytest.approx(mean_cross_entropy(hf, sequences), rel=1e-5)


def test_batched_windows_give_the_logits_of_one_at_a_time(tiny_model_dir, records_file):
    scorer = TransformersScorer(str(tiny_model_dir), batch_size=4)
    windows = [e.input_ids for e in encoded_records(scorer.tokenizer, records_file)][:4]
    assert len({len(w) for w in windows}) > 1  # padding is exercised
    batched = scorer.logits(windows)
    for window, logits in zip(windows, batched):
        (alone,) = scorer.logits([window])
        assert logits.shape == (len(window), scorer.vocab_size) and logits.dtype == torch.float32
        torch.testing.assert_close(logits, alone, atol=1e-4, rtol=1e-4)
    one, four = measure(tiny_model_dir, records_file), measure(tiny_model_dir, records_file, batch_size=4)
    assert four["tokens"] == one["tokens"]
    assert four["perplexity"] == pytest.approx(one["perplexity"], rel=1e-5)


def test_a_model_as_its_own_reference(tiny_model_dir, records_file):
    result = measure(tiny_model_dir, records_file, reference=str(tiny_model_dir), batch_size=3)
    assert abs(result["kl_divergence"]) < 1e-6
    assert result["top1_agreement"] == 1.0
    assert result["reference_perplexity"] == pytest.approx(result["perplexity"], rel=1e-6)


def test_another_model_as_reference(tiny_model_dir, other_model_dir, records_file):
    result = measure(tiny_model_dir, records_file, reference=str(other_model_dir))
    other = measure(other_model_dir, records_file)
    assert result["kl_divergence"] > 1e-3
    assert 0 <= result["top1_agreement"] < 1
    assert result["reference_perplexity"] == pytest.approx(other["perplexity"], rel=1e-5)


def test_kl_and_top1_math_match_torch():
    torch.manual_seed(0)
    logp, ref_logp = torch.randn(7, 11).log_softmax(-1), torch.randn(7, 11).log_softmax(-1)
    expected = F.kl_div(logp, ref_logp, log_target=True, reduction="none").sum(-1)  # KL(ref || model)
    torch.testing.assert_close(kl_divergence(ref_logp, logp), expected)
    assert (kl_divergence(ref_logp, logp) > 0).all() and kl_divergence(logp, logp).abs().max() < 1e-6
    assert top1_agreement(ref_logp, logp).tolist() == (ref_logp.argmax(-1) == logp.argmax(-1)).tolist()


@pytest.fixture(scope="module")
def trained_adapter(model, tmp_path_factory):
    """A LoRA adapter whose B matrices are random (an untrained one would change nothing)."""
    from peft import LoraConfig, get_peft_model

    from pacos.models.peft_warnings import peft_alias_filter

    base, tokenizer = load_model(model[0].name_or_path)
    out = tmp_path_factory.mktemp("adapter") / "lora"
    torch.manual_seed(0)
    with peft_alias_filter():
        peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        peft_model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_an_adapter_is_scored_merged(trained_adapter, tiny_model_dir, records_file):
    merged, tokenizer = load_model(trained_adapter)
    encoded = encoded_records(tokenizer, records_file)
    expected = mean_cross_entropy(merged, [(e.input_ids, e.input_ids) for e in encoded])
    result = measure(trained_adapter, records_file)
    assert result["nll"] == pytest.approx(expected, rel=1e-5)
    assert result["nll"] != pytest.approx(measure(tiny_model_dir, records_file)["nll"], rel=1e-3)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["perplexity", *map(str, args), "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_fields(capsys, tiny_model_dir, records_file):
    code, out, _ = run_cli(capsys, tiny_model_dir, "--data", records_file, "--json", "--ctx", "128")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"model", "reference", "data", "ctx", "windows", "tokens", "perplexity", "nll"}
    assert result["reference"] is None and result["ctx"] == 128 and result["windows"] == 12
    code, out, _ = run_cli(capsys, tiny_model_dir, "--data", records_file, "--json", "--reference", tiny_model_dir)
    assert code == 0
    assert set(json.loads(out)) == {"model", "reference", "data", "ctx", "windows", "tokens", "perplexity", "nll",
                                    "kl_divergence", "top1_agreement", "reference_perplexity"}
    code, out, _ = run_cli(capsys, tiny_model_dir, "--data", records_file, "--reference", tiny_model_dir)
    assert code == 0 and "perplexity:" in out and "top-1 agreement:  100.00%" in out


@pytest.fixture(scope="module")
def bigger_vocab_dir(model, tmp_path_factory):
    base, tokenizer = load_model(model[0].name_or_path)
    base.resize_token_embeddings(base.config.vocab_size + 1)
    path = tmp_path_factory.mktemp("models") / "tiny-plus-one"
    base.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("case, needle", [
    ("missing", "no such file"),
    ("empty_text", "empty file"),
    ("empty_records", "empty file"),
    ("not_utf8", "not UTF-8"),
    ("bad_json", "malformed JSON"),
    ("directory", "is a directory"),
    ("short_text", "too few for --ctx"),
    ("ctx_1", "--ctx must be an integer >= 2"),
    ("responses_on_text", "--responses"),
    ("bad_model", "no such directory"),
    ("bad_reference", "no such directory"),
    ("vocab_mismatch", "vocabulary"),
])
def test_bad_inputs_give_one_line_errors(capsys, tmp_path, tiny_model_dir, records_file, text_file,
                                         bigger_vocab_dir, case, needle):
    files = {"empty_text": ("e.txt", b"  \n"), "empty_records": ("e.jsonl", b""), "not_utf8": ("b.txt", b"ok\xff"),
             "bad_json": ("b.jsonl", b'{"instruction": "x", '), "short_text": ("s.txt", b"hi")}
    args = [tiny_model_dir, "--data", records_file]
    if case in files:
        name, content = files[case]
        (tmp_path / name).write_bytes(content)
        args = [tiny_model_dir, "--data", tmp_path / name]
    extra = {"missing": ["--data", tmp_path / "nope.jsonl"], "directory": ["--data", tmp_path],
             "short_text": ["--ctx", "64"], "ctx_1": ["--ctx", "1"],
             "responses_on_text": ["--data", text_file, "--responses"],
             "bad_reference": ["--reference", tmp_path / "no-model"], "vocab_mismatch": ["--reference", bigger_vocab_dir]}
    args += extra.get(case, [])
    if case == "bad_model":
        args[0] = tmp_path / "no-model"
    code, _, err = run_cli(capsys, *args)
    assert code == 2, err
    assert err.startswith("pacos: error: ") and len(err.strip().splitlines()) == 1, err
    assert needle in err and "Traceback" not in err


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=json_ish_files() | st.binary(max_size=300), suffix=st.sampled_from([".jsonl", ".json", ".txt"]),
       ctx=st.integers(2, 40), responses=st.booleans())
def test_fuzzed_data_files_give_a_result_or_one_line(capsys, tmp_path, tiny_model_dir, data, suffix, ctx,
                                                     responses):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    args = [tiny_model_dir, "--data", path, "--ctx", ctx, "--json"] + (["--responses"] if responses else [])
    code, out, err = run_cli(capsys, *args)
    assert code in (0, 2), err
    if code == 0:
        result = json.loads(out)
        assert result["tokens"] > 0 and math.isfinite(result["perplexity"]) and not err
    else:
        assert err.startswith("pacos: error: ") and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("data, ctx", [("records", 512), ("text", 64)])
def test_an_f32_gguf_gives_the_perplexity_of_its_model(tiny_gguf, tiny_model_dir, records_file, text_file, data,
                                                      ctx):
    path = records_file if data == "records" else text_file
    hf, gguf = measure(tiny_model_dir, path, ctx=ctx), measure(tiny_gguf, path, ctx=ctx)
    assert (gguf["windows"], gguf["tokens"]) == (hf["windows"], hf["tokens"])  # its embedded tokenizer: same ids
    assert gguf["perplexity"] == pytest.approx(hf["perplexity"], rel=1e-3)


def test_a_gguf_against_its_model_as_reference(tiny_gguf, tiny_model_dir, records_file):
    from pacos.eval.perplexity import load_windows, read_data
    from pacos.eval.perplexity_scorers import LlamaCppScorer

    result = measure(tiny_gguf, records_file, reference=str(tiny_model_dir))
    assert 0 <= result["kl_divergence"] < 1e-6
    # Top-1 agrees wherever the HF model's choice is clear: the tiny model has random weights, so a few rows hold
    # near-ties that the two implementations' float32 rounding (~1e-4 in logits) may order either way.
    config = PerplexityConfig(data=str(records_file), progress=False)
    hf, gguf = TransformersScorer(str(tiny_model_dir)), LlamaCppScorer(str(tiny_gguf), ctx=config.ctx)
    clear = agree = 0
    for window in load_windows(config, read_data(config), hf.tokenizer, None):
        rows = torch.tensor(window.scored[1:])
        (a,), (b,) = hf.logits([window.ids]), gguf.logits([window.ids])
        assert a.shape == b.shape and b.dtype == torch.float32
        a, b = a[:-1][rows], b[:-1][rows]
        top2 = a.topk(2, dim=-1).values
        decided = top2[:, 0] - top2[:, 1] > 1e-3
        assert (a.argmax(-1) == b.argmax(-1))[decided].all()
        clear += int(decided.sum())
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
    assert clear > 0.9 * result["tokens"]
    assert result["top1_agreement"] == agree / result["tokens"]


def test_a_bad_gguf_file_is_one_line(capsys, tmp_path, text_file):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"junk" * 8)
    for model in (bad, tmp_path / "missing.gguf"):
        code, _, err = run_cli(capsys, model, "--data", text_file)
        assert code == 2 and err.startswith("pacos: error: ") and len(err.strip().splitlines()) == 1, err
        assert "GGUF" in err or "no such file" in err
