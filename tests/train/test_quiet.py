"""`pacos train` and `pacos merge` print no library deprecation noise, while real warnings still reach the user."""

import warnings

from pacos.data.formats import save_records
from pacos.data.synth import synth_records
from pacos.models.peft_warnings import peft_alias_filter
from pacos.models.presets import build_model

from ..conftest import run_pacos

NOISE = ("FutureWarning", "DeprecationWarning", "deprecated")


def test_lora_train_and_merge_print_no_deprecation_noise(tiny_model_dir, tmp_path):
    # LoRA is the path that builds peft models (train, the adapter check after saving, merge): the one that
    # printed transformers' `is_gradient_checkpointing` FutureWarning.
    save_records(synth_records(16, seed=3), tmp_path / "d.jsonl", "jsonl")
    train = run_pacos("train", "--model", tiny_model_dir, "--data", tmp_path / "d.jsonl", "--out", tmp_path / "a",
                      "--lora", "--max-steps", "2", "--batch-size", "4", "--grad-accum", "1", "--no-progress",
                      check=True)
    merge = run_pacos("merge", tmp_path / "a", "--out", tmp_path / "m", check=True)
    assert "saved LoRA adapter" in train.stdout and "merged" in merge.stdout
    for proc in (train, merge):
        assert not [word for word in NOISE if word in proc.stderr], proc.stderr


def test_only_the_peft_alias_warning_is_filtered():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with peft_alias_filter():
            warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
            warnings.warn("a real problem the user should see", UserWarning)
            warnings.warn("some other API is deprecated", FutureWarning)
    assert [(w.category, str(w.message)) for w in caught] == [
        (UserWarning, "a real problem the user should see"), (FutureWarning, "some other API is deprecated")]


def test_the_filter_is_scoped_to_the_peft_call():
    """The real property warns inside the filter only: our own use of it elsewhere would still be seen."""
    model, _ = build_model("nano")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with peft_alias_filter():
            model.is_gradient_checkpointing
        assert not caught
        model.is_gradient_checkpointing
    assert [w.category for w in caught] == [FutureWarning]
    assert "is_gradient_checkpointing" in str(caught[0].message)
