"""The trainer: real training on digits, determinism, failures, resume, configuration, latency."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from nascore import Graph
from nascore.training.data import Splits, TensorSplit, load_dataset
from nascore.errors import DataError, NascoreError, ParamError, RunError, ShapeError, TrialFailed
from nascore.blocks.layers import DropPath
from nascore.training.trainer import TrainConfig, Trainer, measure_latency, pick_device

# a tiny net trains best with small batches and a high rate on 1078 digits; one thread: tiny nets gain nothing
# from more, and lose much when other processes share the cores
FAST = dict(epochs=5, batch_size=16, lr=0.5, device="cpu", threads=1)


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"device": "cpu", "threads": 1, **kw})


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> Splits:
    return load_dataset("digits")


def tiny_graph(classes: int = 10, shape=(1, 8, 8)) -> Graph:
    g = Graph("tiny", shape)
    g.add("conv", "conv_bn_act", out=16)
    g.add("gap", "global_avg_pool")
    g.add("fc", "linear", out=classes)
    return g


def strip_time(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_tiny_net_learns_digits(digits):
    trainer = Trainer.from_graph(tiny_graph(), digits, TrainConfig(**FAST))
    records = trainer.fit()
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    assert set(records[0]) == {"epoch", "loss", "train_acc", "val_acc", "lr", "drop_path", "seconds"}
    assert records[-1]["val_acc"] > 0.5  # chance is 0.1
    assert records[-1]["loss"] < records[0]["loss"]
    assert trainer.evaluate("test") > 0.5
    assert records[-1]["val_acc"] == trainer.evaluate("val")
    assert records[-1]["lr"] < 0.01 * FAST["lr"]  # cosine decayed to ~0
    with pytest.raises(ParamError, match=r"parameter 'epochs': all 5 epochs are trained"):
        trainer.train_epoch()
    with pytest.raises(ParamError, match=r"parameter 'split': got 'dev'"):
        trainer.evaluate("dev")


def test_same_seed_same_result(digits):
    config = TrainConfig(**{**FAST, "epochs": 2})
    a = strip_time(Trainer.from_graph(tiny_graph(), digits, config).fit())
    b = strip_time(Trainer.from_graph(tiny_graph(), digits, config).fit())
    c = strip_time(Trainer.from_graph(tiny_graph(), digits, TrainConfig(**{**FAST, "epochs": 2, "seed": 1})).fit())
    assert a == b
    assert a != c


def test_schedule_warmup_then_cosine(digits):
    trainer = Trainer.from_graph(tiny_graph(), digits, cfg(epochs=4, batch_size=100, lr=0.1))
    steps = trainer.steps_per_epoch
    assert steps == 11  # 1078 = 10 x 100 + 78
    assert trainer.lr_at(0) == pytest.approx(0.1 / steps)
    assert trainer.lr_at(steps - 1) == pytest.approx(0.1)
    assert trainer.lr_at(steps) == pytest.approx(0.1)
    assert trainer.lr_at(steps + (3 * steps) // 2) == pytest.approx(0.05, rel=0.05)
    assert trainer.lr_at(4 * steps - 1) < 0.001


def test_non_finite_loss_fails_the_trial(digits):
    trainer = Trainer.from_graph(tiny_graph(), digits, cfg(epochs=2, lr=1e30, warmup_epochs=0))
    with pytest.raises(TrialFailed, match=r"non-finite loss at epoch 1 step \d+") as info:
        trainer.train_epoch()
    assert isinstance(info.value, NascoreError) and info.value.reason == "non-finite" and info.value.epoch == 1


class _Hungry(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_out_of_memory_fails_the_trial(digits):
    trainer = Trainer(_Hungry(), digits, cfg(epochs=1))
    with pytest.raises(TrialFailed, match=r"out of memory at epoch 1 step 1 \(batch size 64 on cpu\): CUDA out"):
        trainer.train_epoch()
    with pytest.raises(TrialFailed, match=r"out of memory at evaluation on val"):
        trainer.evaluate()


def test_resume_from_checkpoint_is_identical(digits, tmp_path):
    config = TrainConfig(**{**FAST, "epochs": 4})
    trainer = Trainer.from_graph(tiny_graph(), digits, config)
    trainer.fit(callback=lambda record: record["epoch"] == 2)  # stop after 2 of 4
    assert trainer.epoch == 2
    trainer.save(tmp_path / "ckpt.pt")
    state = copy.deepcopy(trainer.state_dict())
    finished = strip_time(trainer.fit())
    assert [r["epoch"] for r in finished] == [3, 4]

    for restore in ("file", "dict"):
        torch.manual_seed(999)  # disturb every RNG: the checkpoint must restore them
        resumed = Trainer.from_graph(tiny_graph(), digits, TrainConfig(**{**FAST, "epochs": 4, "seed": 5}))
        if restore == "file":
            resumed.load(tmp_path / "ckpt.pt")
        else:
            resumed.load_state_dict(state)
        assert resumed.epoch == 2 and len(resumed.history) == 2
        assert strip_time(resumed.fit()) == finished

    other = Trainer.from_graph(tiny_graph(), digits, TrainConfig(**{**FAST, "epochs": 6}))
    with pytest.raises(RunError, match=r"ckpt.pt: was trained with schedule"):
        other.load(tmp_path / "ckpt.pt")
    wider = tiny_graph()
    wider.set_param("conv", "out", 8)
    with pytest.raises(RunError, match=r"does not fit this model"):
        Trainer.from_graph(wider, digits, config).load(tmp_path / "ckpt.pt")
    with pytest.raises(RunError, match=r"missing.pt: checkpoint not found"):
        trainer.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(RunError, match=r"junk.pt: not a readable checkpoint"):
        trainer.load(tmp_path / "junk.pt")


def test_config_from_dict():
    config = TrainConfig.from_dict({"epochs": 3, "lr": 1, "optimizer": "adamw", "grad_clip": 5, "device": "cpu"})
    assert config.epochs == 3 and config.lr == 1.0 and isinstance(config.lr, float) and config.grad_clip == 5.0
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict(None) == TrainConfig()
    with pytest.raises(ParamError, match=r"run.yaml: train: 'learning_rate': unknown key.*expected one of: epochs"):
        TrainConfig.from_dict({"learning_rate": 0.1}, where="run.yaml: train")
    with pytest.raises(ParamError, match=r"'epoch': unknown key \(did you mean 'epochs'\?\)"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ParamError, match=r"train config: parameter 'lr': got 'fast' \(str\), expected float"):
        TrainConfig.from_dict({"lr": "fast"})
    with pytest.raises(ParamError, match=r"parameter 'optimizer': got 'adam', expected one of \['sgd', 'adamw'\]"):
        TrainConfig.from_dict({"optimizer": "adam"})
    with pytest.raises(ParamError, match=r"parameter 'epochs': got 0, expected int in \[1, inf\]"):
        TrainConfig.from_dict({"epochs": 0})
    with pytest.raises(ParamError, match=r"parameter 'device': got 'gpu'"):
        TrainConfig.from_dict({"device": "gpu"})
    with pytest.raises(ParamError, match=r"got list, expected a mapping"):
        TrainConfig.from_dict([1, 2])


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ParamError, match=r"parameter 'device': got 'cuda:99'"):
        pick_device("cuda:99")
    with pytest.raises(ParamError, match=r"parameter 'device': got 'tpu'"):
        pick_device("tpu")


def test_measure_latency(digits):
    model = tiny_graph().build()
    seconds = measure_latency(model, (1, 8, 8), "cpu", batch=4, repeats=3, warmup=1)
    assert 0 < seconds < 10 and model.training
    with pytest.raises(ParamError, match=r"parameter 'repeats': got 0"):
        measure_latency(model, (1, 8, 8), "cpu", repeats=0)


def test_shape_mismatches_are_named(digits):
    with pytest.raises(ShapeError, match=r"graph 'tiny' takes input \[3, 8, 8\] but dataset 'digits' has samples of "
                                         r"shape \[1, 8, 8\]"):
        Trainer.from_graph(tiny_graph(shape=(3, 8, 8)), digits, cfg())
    trainer = Trainer.from_graph(tiny_graph(classes=5), digits, cfg(epochs=1))
    with pytest.raises(ShapeError, match=r"model output is shape \[64, 5\]; expected logits of shape \[batch, 10\]"):
        trainer.train_epoch()


def test_generic_dataset_augment_drop_path_adamw_clip():
    synthetic = load_dataset("synthetic", n=300, classes=3, shape=[3, 16, 16])

    class Plain(torch.utils.data.Dataset):  # not a TensorSplit: read once into memory
        def __init__(self, split):
            self.split = split

        def __len__(self):
            return len(self.split)

        def __getitem__(self, i):
            return self.split.x[i], int(self.split.y[i])

    splits = Splits(Plain(synthetic.train), synthetic.val, synthetic.test, synthetic.input_shape, 3, synthetic.mean,
                    synthetic.std, name="plain")
    g = Graph("res", (3, 16, 16))
    g.add("stem", "conv_bn_act", out=8)
    g.add("block", "resnet_basic", out=8)
    g.add("gap", "global_avg_pool")
    g.add("fc", "linear", out=3)
    config = TrainConfig(epochs=4, batch_size=32, optimizer="adamw", lr=0.01, weight_decay=0.05, drop_path=0.2,
                         augment=True, grad_clip=1.0, device="cpu", threads=1)
    trainer = Trainer.from_graph(g, splits, config)
    rates = []
    for _ in range(4):
        record = trainer.train_epoch()
        rates.append([m.drop_prob for m in trainer.model.modules() if isinstance(m, DropPath)])
    assert rates == [[0.0], [pytest.approx(0.05)], [pytest.approx(0.1)], [pytest.approx(0.15)]]
    assert record["val_acc"] > 0.6  # chance: 1/3
    assert torch.get_num_threads() == 1

    small = TensorSplit(torch.zeros(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]))
    bad = Splits(Plain(small), synthetic.val, synthetic.test, synthetic.input_shape, 3, synthetic.mean, synthetic.std,
                 name="bad")
    with pytest.raises(DataError, match=r"'bad': train: samples have shape \[3, 8, 8\], expected \[3, 16, 16\]"):
        Trainer(g.build(), bad, config)
    bad.train = Plain(TensorSplit(torch.zeros(4, 3, 16, 16), torch.tensor([0, 1, 2, 7])))
    with pytest.raises(DataError, match=r"dataset 'bad': train: labels span 0\.\.7, expected 0\.\.2"):
        Trainer(g.build(), bad, config)
    bad.train = [1, 2, 3]
    with pytest.raises(DataError, match=r"dataset 'bad': train: cannot read its samples"):
        Trainer(g.build(), bad, config)


def test_augment_crops_and_flips_within_the_image(digits):
    trainer = Trainer.from_graph(tiny_graph(), digits, cfg(epochs=1, augment=True))
    x = torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(1, 2, 16, 16).repeat(64, 1, 1, 1)
    out = trainer._augment(x)
    assert out.shape == x.shape
    for a in out:  # every output is a shifted (zero-padded), maybe mirrored window of the input
        values = set(a[0].flatten().tolist()) - {0.0}
        assert values <= set(x[0, 0].flatten().tolist()) and len(values) >= 12 * 12
    small = torch.zeros(3, 1, 8, 8)
    assert trainer._augment(small) is small  # digits are too small to crop
