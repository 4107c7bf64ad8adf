"""NT-Xent, the reference code's loss: against pytorch-metric-learning, and under a 2-process gloo DDP."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from training.losses import clip_loss, focusclip_loss, gather_with_grad, ntxent_loss

pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning.losses import NTXentLoss, SelfSupervisedLoss  # noqa: E402


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.mark.parametrize("batch", [2, 7, 32])
def test_ntxent_matches_pytorch_metric_learning(batch):
    ref = SelfSupervisedLoss(NTXentLoss(temperature=0.5))  # the reference: symmetric=True by default
    a, b, m = _unit(batch, 16, 0), _unit(batch, 16, 1), _unit(batch, 16, 2)
    scale = torch.tensor(2.0)
    assert ntxent_loss(a, b, scale).item() == pytest.approx(ref(a, b).item(), abs=1e-5)
    total, terms = focusclip_loss(a, b, m, scale, kind="ntxent")
    want = ref(m, a) + ref(m, b) + ref(a, b)
    assert total.item() == pytest.approx(want.item(), abs=1e-5)
    assert terms["loss_masked_text"].item() == pytest.approx(ref(m, b).item(), abs=1e-5)
    single, _ = clip_loss(a, b, scale, kind="ntxent")
    assert single.item() == pytest.approx(ref(a, b).item(), abs=1e-5)


def test_ntxent_gradient_matches_pytorch_metric_learning():
    a0, b0 = _unit(8, 16, 3), _unit(8, 16, 4)
    a1, b1 = a0.clone().requires_grad_(), b0.clone().requires_grad_()
    a2, b2 = a0.clone().requires_grad_(), b0.clone().requires_grad_()
    # pml's cosine similarity normalises inside the loss; our model normalises before it
    ntxent_loss(F.normalize(a1, dim=-1), F.normalize(b1, dim=-1), torch.tensor(2.0)).backward()
    SelfSupervisedLoss(NTXentLoss(temperature=0.5))(a2, b2).backward()
    torch.testing.assert_close(a1.grad, a2.grad, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(b1.grad, b2.grad, atol=1e-6, rtol=1e-4)


def test_ntxent_differs_from_infonce():
    # Same embeddings, different objectives: NT-Xent also pushes apart rows of the same view.
    a, b = _unit(32, 16, 5), _unit(32, 16, 6)
    scale = torch.tensor(2.0)
    assert ntxent_loss(a, b, scale).item() != pytest.approx(clip_loss(a, b, scale)[0].item(), abs=1e-3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        a, b, m = _unit(8, 16, 10), _unit(8, 16, 11), _unit(8, 16, 12)
        rows = slice(rank * 4, (rank + 1) * 4)
        la, lb, lm = (x[rows].clone().requires_grad_() for x in (a, b, m))
        loss, _ = focusclip_loss(
            la, lb, lm, torch.tensor(2.0), gather=gather_with_grad, rank=rank, kind="ntxent"
        )
        # DDP averages gradients over ranks: the equivalent of backpropagating loss / world on each rank
        (loss / world).backward()
        sums = torch.stack([loss.detach()])
        dist.all_reduce(sums)
        # the other ranks' gradients w.r.t. this rank's rows come back through the gather's backward
        grads = torch.cat([la.grad, lb.grad, lm.grad])
        queue.put((rank, (sums / world).item(), grads.tolist()))  # plain data: no shared tensor fds
        dist.barrier()  # neither rank tears gloo down while the other still talks to it
    finally:
        dist.destroy_process_group()
    # Exit without the interpreter's teardown: gloo's background threads can abort a normal exit
    # ("terminate called without an active exception", about 1 run in 10 on a loaded machine) after
    # the result is already delivered.
    queue.close()
    queue.join_thread()
    os._exit(0)


@pytest.mark.slow
def test_ntxent_ddp_gloo_matches_single_process():
    world = 2
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, world, port, queue)) for r in range(world)]
    for p in procs:
        p.start()
    results = dict((r, (v, g)) for r, v, g in (queue.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    a, b, m = (x.clone().requires_grad_() for x in (_unit(8, 16, 10), _unit(8, 16, 11), _unit(8, 16, 12)))
    single, _ = focusclip_loss(a, b, m, torch.tensor(2.0), kind="ntxent")
    single.backward()
    assert results[0][0] == pytest.approx(single.item(), abs=1e-5)
    assert results[1][0] == pytest.approx(single.item(), abs=1e-5)
    for rank in range(world):
        rows = slice(rank * 4, (rank + 1) * 4)
        want = torch.cat([a.grad[rows], b.grad[rows], m.grad[rows]])
        torch.testing.assert_close(torch.tensor(results[rank][1]), want, atol=1e-6, rtol=1e-4)


def test_alpha_parametrisations_and_fixed_alpha():
    from training.model import FocusCLIP

    clip = torch.nn.Module()
    clip.logit_scale = torch.nn.Parameter(torch.tensor(0.0))
    clip.visual = torch.nn.Module()
    plain = FocusCLIP(clip, focus=True, alpha_param="plain", alpha_init=0.5)
    assert isinstance(plain.alpha(), torch.nn.Parameter) and plain.alpha().item() == 0.5
    # the reference's unconstrained parameter gets the full gradient; the sigmoid one a quarter of it
    plain.alpha().backward()
    assert plain.alpha_plain.grad.item() == 1.0
    bounded = FocusCLIP(clip, focus=True, alpha_param="sigmoid", alpha_init=0.5)
    bounded.alpha().backward()
    assert bounded.alpha_logit.grad.item() == pytest.approx(0.25)
    fixed = FocusCLIP(clip, focus=True, alpha_param="plain", alpha_init=0.3, learn_alpha=False)
    assert not fixed.alpha_plain.requires_grad and fixed.alpha().item() == pytest.approx(0.3)
