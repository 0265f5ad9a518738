"""Where a rank runs and with what defaults: the GPU of its LOCAL_RANK, NCCL bound to it,
bf16 only on bf16 hardware, cuDNN autotuning, and batch / LR / loader defaults per device.
CUDA is pretended with monkeypatched torch.cuda functions (no GPU here)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import depthkit.core.dist as dist
import depthkit.train.config as config
from depthkit.core.dist import DistInfo, device_kind, dist_from_env, init_distributed, pick_device
from depthkit.core.errors import DepthkitError
from depthkit.loader.batches import LoaderRequest
from depthkit.loader.memory import tensor_loader_factory
from depthkit.train import Stage, TrainConfig, fit
from depthkit.train.config import apply_recipe, gpu_batch_size
from depthkit.train.runtime import distributed_runtime, pick_amp_dtype

TORCHRUN_RANK_3 = DistInfo(rank=3, world_size=4, local_rank=3, local_world_size=4)


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch):
    """`gpus(n)`: torch sees n CUDA devices (set_device does nothing)."""

    def pretend(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)

    return pretend


def test_cuda_under_torchrun_is_the_gpu_of_the_local_rank(gpus) -> None:
    gpus(2)
    assert pick_device("cuda", TORCHRUN_RANK_3) == torch.device("cuda", 1)  # 3 % 2
    assert pick_device("auto", TORCHRUN_RANK_3) == torch.device("cuda", 1)
    gpus(1)  # CUDA_VISIBLE_DEVICES shows each rank its own GPU: it is cuda:0 to all
    assert pick_device("cuda", TORCHRUN_RANK_3) == torch.device("cuda", 0)
    assert pick_device("cuda:1") == torch.device("cuda", 1)  # one process: as given
    with pytest.raises(DepthkitError, match="LOCAL_RANK; pass --device cuda") as err:
        pick_device("cuda:1", TORCHRUN_RANK_3)
    assert "\n" not in str(err.value)


def test_no_gpu_and_unknown_devices_are_one_line_errors(gpus) -> None:
    gpus(0)
    assert pick_device("auto", TORCHRUN_RANK_3) == torch.device("cpu")
    assert device_kind("auto") == "cpu"
    with pytest.raises(DepthkitError, match="no CUDA device"):
        pick_device("cuda")
    gpus(1)
    assert device_kind("auto") == "cuda"
    for bad in ("tpu", "cuda:x"):
        with pytest.raises(DepthkitError, match="unknown device"):
            pick_device(bad)


def test_the_process_group_is_bound_to_the_rank_gpu(gpus, monkeypatch) -> None:
    gpus(2)
    calls: list[dict] = []
    monkeypatch.setattr(dist.tdist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist.tdist, "init_process_group", lambda **kw: calls.append(kw))
    init_distributed(TORCHRUN_RANK_3, torch.device("cuda", 1))
    init_distributed(TORCHRUN_RANK_3, torch.device("cpu"))
    assert calls[0]["backend"] == "nccl" and calls[0]["device_id"] == torch.device("cuda", 1)
    assert calls[1]["backend"] == "gloo" and "device_id" not in calls[1]


def test_torchrun_environment_gives_the_ranks_on_this_machine() -> None:
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    assert dist_from_env(env) == DistInfo(rank=5, world_size=8, local_rank=1,
                                          local_world_size=4)
    assert dist_from_env({}).local_world_size == 1


def test_auto_amp_takes_bf16_only_where_the_gpu_has_it(monkeypatch, tmp_path: Path) -> None:
    asked: list[dict] = []

    def bf16(**kw) -> bool:
        asked.append(kw)
        return kw.get("including_emulation", True)  # pretend: emulated bf16 only

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", bf16)
    cfg = TrainConfig(shards=tmp_path, amp=True)
    assert pick_amp_dtype(cfg, torch.device("cuda", 0)) is torch.float16
    assert asked == [{"including_emulation": False}]


def test_cuda_runs_autotune_cudnn_and_restore_it(gpus, tmp_path: Path) -> None:
    gpus(1)
    before = torch.backends.cudnn.benchmark
    with distributed_runtime(TrainConfig(shards=tmp_path, device="cuda")) as rt:
        assert rt.device == torch.device("cuda", 0) and torch.backends.cudnn.benchmark
    assert torch.backends.cudnn.benchmark == before
    with distributed_runtime(TrainConfig(shards=tmp_path, device="cpu")):
        assert torch.backends.cudnn.benchmark == before


def test_gpu_batch_defaults_and_the_original_ones(tmp_path: Path) -> None:
    gpu = TrainConfig(shards=tmp_path, device="cuda")
    assert {r: gpu.batch_for(r) for r in (64, 128, 224)} == {64: 1024, 128: 512, 224: 256}
    sizes = [gpu.batch_for(r) for r in range(32, 513, 16)]
    assert sizes == sorted(sizes, reverse=True) and all(b % 8 == 0 for b in sizes)
    assert gpu_batch_size(448) == 64  # past the table: by pixel count (a quarter of 224's)
    for cfg in (TrainConfig(shards=tmp_path, device="cuda", recipe="original"),
                TrainConfig(shards=tmp_path, device="cpu"), TrainConfig(shards=tmp_path)):
        assert {r: cfg.batch_for(r) for r in (64, 128, 224)} == {64: 100, 128: 32, 224: 12}
    assert TrainConfig(shards=tmp_path, device="cuda", batch_size=7).batch_for(64) == 7


def test_the_default_lr_follows_the_gpu_batch_by_its_square_root(tmp_path: Path) -> None:
    def lr(**kw) -> float:
        return apply_recipe(TrainConfig(shards=tmp_path, **kw)).lr

    assert lr(device="cuda", stages=(Stage(64, 1),)) == pytest.approx(4e-3 * math.sqrt(10.24))
    assert lr(device="cuda", stages=(Stage(224, 1), Stage(64, 1))) == pytest.approx(
        4e-3 * math.sqrt(256 / 12))  # the first stage's batch
    assert lr(device="cuda", optimizer="sgd", stages=(Stage(128, 1),)) == pytest.approx(
        0.047 * 4)
    assert lr(device="cpu") == 4e-3 and lr(device="cuda", recipe="original") == 0.047
    assert lr(device="cuda", batch_size=512) == 4e-3 and lr(device="cuda", lr=0.1) == 0.1
    again = apply_recipe(apply_recipe(TrainConfig(shards=tmp_path, device="cuda")))
    assert again.lr == lr(device="cuda")  # scaled once


def test_loader_threads_and_prefetch_per_device(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(config, "available_cores", lambda: 16)
    gpu = TrainConfig(shards=tmp_path, device="cuda")
    assert (gpu.loader_threads(1), gpu.loader_threads(2), gpu.loader_threads(16)) == (15, 7, 1)
    monkeypatch.setattr(config, "available_cores", lambda: 128)
    assert gpu.loader_threads(1) == config.LOADER_THREADS_MAX
    assert TrainConfig(shards=tmp_path, device="cpu").loader_threads(1) == 2
    assert TrainConfig(shards=tmp_path, device="cuda", num_threads=3).loader_threads(8) == 3
    assert (gpu.prefetch, TrainConfig(shards=tmp_path).prefetch) == (4, 2)


def test_the_trainer_asks_for_the_device_defaults_and_records_the_device(
    tmp_path: Path, toy_config, toy_data
) -> None:
    base, asked = tensor_loader_factory(toy_data()), []

    def factory(req: LoaderRequest):
        asked.append(req)
        return base(req)

    fit(toy_config(tmp_path, device="auto", max_steps=1), factory)  # auto: the CPU here
    assert [(r.num_threads, r.prefetch) for r in asked] == [(2, 2)]
    from depthkit.model.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "last.pt")["meta"]["config"]["device"] == "cpu"


def test_the_shard_loader_gets_the_prefetch_depth(
    monkeypatch, tmp_path: Path, shard_root: Path
) -> None:
    import depthkit.loader as loader
    from depthkit.train.data import shard_loader_factory

    seen = []
    monkeypatch.setattr(loader, "build_loader", lambda cfg: seen.append(cfg))
    make = shard_loader_factory(TrainConfig(shards=shard_root, stages=(Stage(32, 1),),
                                            batch_size=2))
    make(LoaderRequest(split="train", res=32, batch_size=2, train=True, dist=DistInfo(),
                       device="cpu", seed=0, num_threads=3, channels_last=False, prefetch=5))
    assert (seen[0].prefetch, seen[0].num_threads) == (5, 3)
