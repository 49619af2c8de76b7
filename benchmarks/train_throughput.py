"""Training throughput: vidstyle's loop in fp32 and in bf16 against a plain fp32 loop, same network and losses.

    python benchmarks/train_throughput.py --size 256 --steps 10            # CPU: seconds per step
    python benchmarks/train_throughput.py --size 256 --steps 50            # GPU

"plain" is the way pytorch/examples' fast_neural_style trains: fp32, contiguous tensors, Adam, one
process, a zero-padded VGG (the transformer network is vidstyle's in all three, with its faster forms of
the upsampling and output layers: the same function). "vidstyle" is `Trainer.train_step` with ``--precision fp32`` and with
``--precision bf16`` (autocast; channels_last on CUDA), AdamW and the reflect-padded loss network. All leave out
the temporal loss so that the work is the same, and read the same photos with the same seeds.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidstyle.models.transformer import TransformerNet, arch_config  # noqa: E402
from vidstyle.train import losses as L  # noqa: E402
from vidstyle.train.config import TrainConfig  # noqa: E402
from vidstyle.train.loop import Trainer  # noqa: E402


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "content"))
    ap.add_argument("--style", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "style" /
                                           "starry_night.jpg"))
    ap.add_argument("--arch", default="transformer")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--loss-net", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precisions", default="fp32,bf16", help="vidstyle loops to time")
    a = ap.parse_args()

    def config(precision: str) -> TrainConfig:
        return TrainConfig(styles=[a.style], data=a.data, arch=a.arch, size=a.size, batch_size=a.batch_size,
                           steps=10 ** 9, temporal="none", loss_net=a.loss_net, device=a.device, checkpoint_every=0,
                           preview_minutes=0, run_dir="/tmp/vidstyle-throughput", data_limit=512,
                           precision=precision, output="/tmp/vidstyle-throughput/unused.safetensors")

    seconds = {}
    for precision in a.precisions.split(","):
        tr = Trainer(config(precision))
        dev = tr.device
        for _ in range(a.warmup):
            tr.train_step()
        sync(dev)
        t0 = time.perf_counter()
        for _ in range(a.steps):
            tr.train_step()
        sync(dev)
        seconds[f"vidstyle_{precision}"] = (time.perf_counter() - t0) / a.steps
    cfg = tr.cfg

    # the plain loop: fp32, contiguous, Adam
    torch.manual_seed(0)
    net = TransformerNet(arch_config(a.arch, 1)).to(dev)
    from vidstyle.train.lossnet import load_loss_net
    vgg = load_loss_net(a.loss_net, dev)  # zero padding, as trained
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    grams = tr.grams[0][0]  # the first style at full size

    def plain_step(step: int) -> None:
        gen = torch.Generator().manual_seed(step)
        x = tr.photos.batch(a.batch_size, gen).to(dev)
        opt.zero_grad()
        y = net(x)
        fy, fx = vgg(y), vgg(x)
        loss = (cfg.content_weight * L.content_loss(fy, fx) + cfg.style_weight * L.style_loss(fy, grams)
                + cfg.tv_weight * L.tv_loss(y))
        loss.backward()
        opt.step()

    for i in range(a.warmup):
        plain_step(i)
    sync(dev)
    t0 = time.perf_counter()
    for i in range(a.steps):
        plain_step(i)
    sync(dev)
    seconds["plain_fp32"] = (time.perf_counter() - t0) / a.steps
    gpu = torch.cuda.get_device_name(0) if dev.type == "cuda" else None
    print(json.dumps({"device": str(dev), "gpu": gpu, "arch": a.arch, "size": a.size, "batch_size": a.batch_size,
                      "steps": a.steps, **{f"{k}_s_per_step": round(v, 3) for k, v in seconds.items()},
                      **{f"{k}_speedup_over_plain": round(seconds["plain_fp32"] / v, 2)
                         for k, v in seconds.items() if k != "plain_fp32"},
                      "loss_net": tr.loss_net_source, "cpu_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
