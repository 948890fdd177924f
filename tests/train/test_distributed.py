"""Two training processes on CPU (gloo): DDP and FSDP give one process's losses and model; resume; launch errors.

The single-process reference takes the same global batch (2 x --batch-size) as the two processes: the
distributed sampler hands each process its half of the same records, in the same order, so every optimizer step
sees the same records. Packing stays on (`--packing auto`): each process packs its half into one row, and the
loss is normalised by the trained tokens of the whole step on every process, so the sum is the same.
"""

import json
import shutil

import pytest
import yaml

from pacos.data.formats import save_records
from pacos.data.synth import synth_records
from pacos.models.loading import load_model
from pacos.train.config import TrainConfig
from pacos.train.loop import train

from ..conftest import REPO, run_pacos

# 32 records, 8 per global step: 4 steps, checkpoints at 2 and 4. fp32 on CPU.
FLAGS = dict(batch_size=4, grad_accum=1, max_len=64, max_steps=4, save_every=2, warmup_ratio=0.0, lr=3e-3,
             seed=7)
LOSS_RTOL = 1e-5  # measured: equal here (seed 7), <= 2e-7 relative at seed 42; DDP and FSDP alike
# measured: <= 5.3e-5 after 4 AdamW steps (2.1e-5 at seed 42): fp32 sums in another order, which Adam magnifies
# where a gradient is near zero. A wrong step would differ by about the learning rate (3e-3) per step.
WEIGHT_ATOL = 2e-4


def _cli_flags(model, data, out, **kw):
    args = ["train", "--model", model, "--data", data, "--out", out, "--no-progress"]
    for name, value in {**FLAGS, **kw}.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return [str(a) for a in args]


def _losses(out):
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)]


def _weights(out):
    model, _ = load_model(out)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= WEIGHT_ATOL, f"max weight difference {worst:.3g}"


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """Output dirs: one process at batch 8, and two processes at batch 4 with DDP and with FSDP."""
    root = tmp_path_factory.mktemp("distributed")
    data = root / "train.jsonl"
    save_records(synth_records(32, seed=5), data, "jsonl")
    config = TrainConfig(model=str(tiny_model_dir), data=str(data), out=str(root / "one"), progress=False,
                         **{**FLAGS, "batch_size": 2 * FLAGS["batch_size"]})
    train(config, log=lambda *_: None)
    procs = {}
    for name, extra in (("ddp", []), ("fsdp", ["--fsdp"])):
        procs[name] = run_pacos(*_cli_flags(tiny_model_dir, data, root / name), "--nproc", "2", *extra,
                                timeout=300, check=True)
    return root, data, procs


@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_two_processes_match_one(runs, kind):
    root, _, procs = runs
    assert _losses(root / kind) == pytest.approx(_losses(root / "one"), rel=LOSS_RTOL)
    assert len(_losses(root / kind)) == FLAGS["max_steps"]
    _assert_same_weights(_weights(root / kind), _weights(root / "one"))
    # rank 0 speaks for the run: each line once, the shape of the run named
    err = procs[kind].stderr + procs[kind].stdout
    assert err.count("saved model to") == 1 and err.count("packing: on") == 1
    assert f"x 2 processes ({kind.upper()})" in err
    assert json.loads((root / kind / "pacos_train.json").read_text())["processes"] == 2


def test_fsdp_saves_one_whole_model_and_resumable_checkpoints(runs):
    root, _, _ = runs
    out = root / "fsdp"
    # the model is saved once, whole (gathered on rank 0), beside the same files a one-process run writes
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (root / "one").iterdir())
    assert list(out.glob("*.safetensors")) == [out / "model.safetensors"]
    ckpt = out / "checkpoints" / "checkpoint-4"
    assert (ckpt / "pytorch_model_fsdp.bin").is_file() and (ckpt / "optimizer.bin").is_file()
    assert sorted(p.name for p in ckpt.glob("rng_state*")) == ["rng_state_0.pth", "rng_state_1.pth"]
    from pacos.train.checkpoints import checkpoint_problem

    assert checkpoint_problem(ckpt, lora=False) is None


def test_fsdp_resume_across_processes_continues_the_run(runs, tiny_model_dir, tmp_path):
    root, data, _ = runs
    out = tmp_path / "resumed"
    shutil.copytree(root / "fsdp", out)
    # as if the run had been killed after its step-2 checkpoint: the later one and the model never written
    shutil.rmtree(out / "checkpoints" / "checkpoint-4")
    (out / "model.safetensors").unlink()
    proc = run_pacos(*_cli_flags(tiny_model_dir, data, out), "--nproc", "2", "--fsdp", "--resume", timeout=300,
                     check=True)
    assert "resuming" in proc.stdout + proc.stderr
    assert _losses(out) == pytest.approx(_losses(root / "fsdp"), rel=LOSS_RTOL)
    _assert_same_weights(_weights(out), _weights(root / "fsdp"))


@pytest.mark.parametrize("args,message", [
    (["--nproc", "0"], "--nproc must be an integer >= 1 (got 0)"),
    (["--nproc", "two"], "invalid int value"),
    (["--fsdp"], "--fsdp shards the model over several processes"),
    (["--fsdp", "--lora", "--nproc", "2"], "--fsdp with --lora is not supported"),
])
def test_bad_process_settings_are_one_line_errors(tiny_model_dir, tmp_path, args, message):
    proc = run_pacos("train", "--model", tiny_model_dir, "--data", tmp_path / "none.jsonl", "--out", tmp_path / "o",
                     *args)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert message in proc.stderr


def test_an_error_in_every_process_is_printed_once(tiny_model_dir, tmp_path):
    proc = run_pacos(*_cli_flags(tiny_model_dir, tmp_path / "missing.jsonl", tmp_path / "o"), "--nproc", "2",
                     timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("pacos:")]
    assert len(errors) == 1 and "missing.jsonl" in errors[0]


@pytest.mark.parametrize("name", ["fsdp_8gpu.yaml", "multi_node.yaml"])
def test_accelerate_configs_are_valid(name):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType

    path = REPO / "configs" / "accelerate" / name
    raw = yaml.safe_load(path.read_text())
    config = ClusterConfig.from_yaml_file(str(path))  # refuses keys accelerate does not know
    assert config.num_processes == config.num_machines * 8 and not config.use_cpu
    assert config.distributed_type == DistributedType.FSDP and config.mixed_precision == "bf16"
    fsdp = raw["fsdp_config"]
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT" and fsdp["fsdp_reshard_after_forward"] is True
    # every fsdp_config key is one `accelerate launch` takes (it passes them on as its --fsdp_* options)
    from accelerate.commands.launch import launch_command_parser

    options = {action.dest for action in launch_command_parser()._actions}
    assert set(fsdp) <= options, sorted(set(fsdp) - options)
    if name == "multi_node.yaml":
        assert config.num_machines > 1 and config.main_process_ip and config.main_process_port
