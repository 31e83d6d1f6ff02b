"""Odd training batches on two CPU threads: torch 2.13's oneDNN strided-convolution backward on channels_last
tensors corrupts the heap there, so ``odd_batch_guard`` runs such steps on one thread (rsir.train.loop)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from rsir.train.loop import odd_batch_guard

CASE = textwrap.dedent("""
    import torch
    from torch import nn
    from rsir.train.loop import odd_batch_guard
    torch.set_num_threads(2)
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 1, stride=2, bias=False).to(memory_format=torch.channels_last)
    for _ in range(200):
        x = torch.randn(7, 8, 30, 30).to(memory_format=torch.channels_last).requires_grad_()
        with odd_batch_guard(x.shape[0], torch.device("cpu")):
            conv(x).pow(2).mean().backward()
    print("done")
""")


def test_guard_sets_one_thread_for_odd_batches_and_restores() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cpu = torch.device("cpu")
        with odd_batch_guard(7, cpu):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        for n in (1, 8, 64):  # even batches and single items keep every thread
            with odd_batch_guard(n, cpu):
                assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_odd_channels_last_batches_train_through_the_guard() -> None:
    """The crashing case (a 1 x 1 stride-2 convolution, batch 7, channels_last, 2 threads), 200 steps in a child
    process: with the guard it finishes cleanly."""
    proc = subprocess.run([sys.executable, "-c", CASE], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "done", (proc.returncode, proc.stderr[-2000:])
