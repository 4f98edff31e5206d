"""Every FFN variant against its dense or loop reference (issue 4's equivalences)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.blocks import Block, Encoder
from core.ffn import (FFN, build_ffn, calibrate_chess, collect_aux_loss, guidance, oracle_routes, reparam_model,
                      set_guidance)
from core.ffn.structured import BlockDenseLinear, LowRankLinear
from core.grad import GradientReversal, add_gradient_noise, noise_std
from core.prune import finercut


# ------------------------------------------------------------------ MoE
def test_moe_with_one_expert_is_its_dense_ffn():
    moe = build_ffn("moe", 16, hidden=32, experts=1, top_k=1).eval()
    x = torch.randn(3, 7, 16)
    torch.testing.assert_close(moe(x), moe.experts[0](x))
    assert float(moe.dropped) == 0.0


def test_moe_balanced_dispatch_reaches_the_balance_minimum_and_a_collapsed_one_does_not():
    moe = build_ffn("moe", 16, experts=4, top_k=1)
    with torch.no_grad():  # nearly uniform probabilities, each token's favourite a different expert in turn
        moe.router.weight.zero_()
        moe.router.weight[:, :4] = 1e-3 * torch.eye(4)
    x = torch.zeros(64, 16)
    x[torch.arange(64), torch.arange(64) % 4] = 1.0
    moe(x)
    torch.testing.assert_close(moe.load, torch.full((4,), 0.25))  # the dispatch itself is balanced
    assert float(moe.balance_loss) == pytest.approx(1.0, abs=1e-3)
    assert float(moe.z_loss) == pytest.approx(torch.log(torch.tensor(4.0)).item() ** 2, rel=1e-3)
    with torch.no_grad():
        moe.router.weight[0, :4] += 5.0  # every token to expert 0
    moe(x)
    torch.testing.assert_close(moe.load, torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert float(moe.balance_loss) > 3.5  # near its maximum E = 4


def test_moe_switch_gate_and_capacity_drops():
    torch.manual_seed(0)
    moe = build_ffn("moe", 8, hidden=16, experts=2, top_k=1, capacity_factor=0.5).eval()
    nn.init.zeros_(moe.router.weight)  # every token prefers expert 0 (tie -> first)
    x = torch.randn(10, 8)
    y = moe(x)
    cap = moe.capacity(10)  # ceil(0.5 * 1 * 10 / 2) = 3
    assert cap == 3 and float(moe.dropped) == pytest.approx(0.7)
    torch.testing.assert_close(y[:3], 0.5 * moe.experts[0](x[:3]))  # Switch: gate = top probability = 1/2
    assert torch.all(y[3:] == 0)  # dropped tokens contribute nothing; the residual carries them


def test_moe_top2_matches_a_loop_reference():
    moe = build_ffn("moe", 8, hidden=16, experts=4, top_k=2, capacity_factor=None).eval()
    x = torch.randn(12, 8)
    p = moe.router(x).softmax(-1)
    g, idx = p.topk(2, -1)
    g = g / g.sum(-1, keepdim=True)
    ref = torch.stack([sum(g[t, j] * moe.experts[int(idx[t, j])](x[t]) for j in range(2)) for t in range(12)])
    torch.testing.assert_close(moe(x), ref, rtol=1e-5, atol=1e-6)
    assert float(collect_aux_loss(moe)) > 0


# ------------------------------------------------------------------ MoT
def test_mot_one_modality_is_its_ffn_and_routes_by_id():
    mot = build_ffn("mot", 8, modalities=1)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(mot(x), mot.ffns[0](mot.norms[0](x)))
    mot2 = build_ffn("mot", 8, modalities=2)
    ids = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0]])
    y = mot2(x, modality=ids)
    for m in (0, 1):
        torch.testing.assert_close(y[ids == m], mot2.ffns[m](mot2.norms[m](x[ids == m])))
    with pytest.raises(ValueError, match="modality ids must be in"):
        mot2(x, modality=ids + 1)


# ------------------------------------------------------------------ structured + self-guided
@pytest.mark.parametrize("name", ["lowrank", "blockdense"])
def test_guided_endpoints_and_reparam(name):
    f = build_ffn(name, 16, hidden=32).eval()
    x = torch.randn(4, 3, 16)
    set_guidance(f, 1.0)
    dense = f.fc2.dense(f.act(f.fc1.dense(x)))
    torch.testing.assert_close(f(x), dense)
    set_guidance(f, 0.0)
    structured = f.fc2.structured(f.act(f.fc1.structured(x)))
    torch.testing.assert_close(f(x), structured)
    for a in (0.3, 0.0):
        g = build_ffn(name, 16, hidden=32).eval()
        set_guidance(g, a)
        before = g(x)
        reparam_model(g)
        torch.testing.assert_close(g(x), before, rtol=1e-5, atol=1e-5)
    assert g.fc1.dense is None  # a = 0: the dense copy is gone


def test_structured_linear_forms_equal_their_dense_matrices():
    x = torch.randn(5, 16)
    lr = LowRankLinear(16, 24, rank=4)
    torch.testing.assert_close(lr(x), x @ lr.dense_weight().T + lr.u.bias)
    bd = BlockDenseLinear(16, 24, rank=8, blocks=4)
    torch.testing.assert_close(bd(x), x @ bd.dense_weight().T + bd.dense.bias, rtol=1e-5, atol=1e-5)
    dense, low = 16 * 64 + 64 * 16, (16 * 4 + 4 * 64) + (64 * 4 + 4 * 16)
    f = build_ffn("lowrank", 16, hidden=64, bias=False, guided=False)
    assert sum(p.numel() for p in f.parameters()) == low < dense


def test_guidance_schedule():
    assert guidance(0, 100) == 1.0 and guidance(50, 100) == pytest.approx(0.5) and guidance(100, 100) == 0.0


# ------------------------------------------------------------------ RePaViT
def _trained_then_folded(m: nn.Module, lr: float):
    """A few SGD steps (non-trivial BatchNorm statistics and weights), then eval; -> (x, output before folding),
    with ``reparam_model(m)`` applied."""
    opt = torch.optim.SGD(m.parameters(), lr=lr)
    for _ in range(5):
        loss = m(3 * torch.randn(8, 10, 24) + 1).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    x = 3 * torch.randn(4, 10, 24) + 1
    before = m(x)
    reparam_model(m)
    return x, before


def test_repa_reparam_equals_training_form_in_eval():
    f = build_ffn("repa", 24, hidden=96, idle=0.75)
    x, before = _trained_then_folded(f, 0.1)
    assert f.fc1_active.out_features == 24 and f.linear.weight.shape == (24, 24)
    torch.testing.assert_close(f(x), before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_repa_reparam_inside_a_block_keeps_the_block_output(norm):
    """In a pre-norm block the FFN sees LayerNorm output (the README's departure from RePaViT): folding must hold
    there too, with the residual around it."""
    torch.manual_seed(0)
    blk = Block(24, mixer="attention", ffn="repa", hidden=96, norm=norm, heads=4, ffn_kw={"idle": 0.75})
    x, before = _trained_then_folded(blk, 0.05)
    assert blk.ffn.linear.weight.shape == (24, 24)
    torch.testing.assert_close(blk(x), before, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ CHESS
def test_chess_threshold_zero_is_dense_and_calibration_hits_sparsity():
    f = build_ffn("chess", 16, hidden=32).eval()
    x = torch.randn(50, 16)
    g, v = f.fc1(x).chunk(2, -1)
    torch.testing.assert_close(f(x), f.fc2(F.silu(g) * v))
    n = calibrate_chess(f, [torch.randn(200, 16) for _ in range(4)], sparsity=0.5)
    assert n == 1 and bool((f.thresholds > 0).all())
    f(torch.randn(4000, 16))
    assert f.sparsity == pytest.approx(0.5, abs=0.05)


def test_chess_without_gating_equals_its_masked_mlp_reference():
    """gated=False: fc2(mask(act(fc1 x))) with mask = |act| >= the channel's calibrated threshold."""
    torch.manual_seed(0)
    f = build_ffn("chess", 16, hidden=32, gated=False).eval()
    assert f.fc1.out_features == 32
    x = torch.randn(50, 16)
    torch.testing.assert_close(f(x), f.fc2(F.silu(f.fc1(x))))  # uncalibrated: dense
    calibrate_chess(f, [torch.randn(300, 16)], sparsity=0.6)
    a = F.silu(f.fc1(x))
    torch.testing.assert_close(f(x), f.fc2(a * (a.abs() >= f.thresholds)))
    assert 0.5 < float(f.sparsity) < 0.7


# ------------------------------------------------------------------ Duo-LLM
def test_duo_forced_routes_and_oracle_budget():
    f = build_ffn("duo", 8, hidden=32).eval()
    x = torch.randn(6, 8)
    for code, ref in ((0, torch.zeros(6, 8)), (1, f.small(x)), (2, f.big(x))):
        f.route = torch.tensor(code)
        torch.testing.assert_close(f(x), ref)
    f.route = None
    model = Encoder(2, 8, mixer="none", ffn="duo", norm="pre", final_norm=False)
    target = torch.randn(1, 6, 8)
    loss = lambda m: (m(target * 0 + x[None]) - target).pow(2).mean(-1).flatten()  # noqa: E731
    routes, best = oracle_routes(model, loss, budget=0.5)
    layers = [b.ffn for b in model.blocks]
    cost = sum(torch.tensor(layer.cost)[r].sum() for layer, r in zip(layers, routes)) / (2 * 6)
    assert cost <= 0.5 + 1e-6
    for layer in layers:
        layer.route = torch.tensor(0)
    skip_all = float(loss(model).mean())
    assert best <= skip_all + 1e-6


# ------------------------------------------------------------------ Macaron, FinerCut, gradient aids
def test_macaron_with_first_ffn_zeroed_is_a_standard_block_with_half_ffn():
    torch.manual_seed(0)
    mac = Block(16, mixer="attention", heads=2, norm="pre", macaron=True).eval()
    std = Block(16, mixer="attention", heads=2, norm="pre").eval()
    std.load_state_dict({k: v for k, v in mac.state_dict().items() if not k.startswith(("ffn0", "norm0"))})
    with torch.no_grad():
        mac.ffn0.fc2.weight.zero_()
        mac.ffn0.fc2.bias.zero_()
        std.ffn.fc2.weight.mul_(0.5)
        std.ffn.fc2.bias.mul_(0.5)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(mac(x), std(x))


def test_finercut_removes_the_sublayer_that_changes_nothing_first():
    torch.manual_seed(0)
    enc = Encoder(3, 16, mixer="attention", heads=2, norm="pre").eval()
    with torch.no_grad():  # block 1's FFN is dead: removing it changes nothing
        enc.blocks[1].ffn.fc2.weight.zero_()
        enc.blocks[1].ffn.fc2.bias.zero_()
    report = finercut(enc, [torch.randn(2, 6, 16)], n_remove=2)
    assert (report[0].block, report[0].sublayer, report[0].distance) == (1, "ffn", 0.0)
    assert enc.blocks[1].skip_ffn and len(report) == 2 and report[1].distance > 0


def test_gradient_reversal_and_noise():
    x = torch.randn(4, requires_grad=True)
    GradientReversal(0.5)(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((4,), -0.5))
    p = nn.Parameter(torch.zeros(10000))
    p.grad = torch.zeros(10000)
    std = add_gradient_noise([p], step=3, eta=0.3, generator=torch.Generator().manual_seed(0))
    assert std == pytest.approx(noise_std(3, 0.3)) == pytest.approx((0.3 / 4 ** 0.55) ** 0.5)
    assert float(p.grad.std()) == pytest.approx(std, rel=0.05)


def test_a_second_class_under_a_taken_name_is_refused():
    from core.ffn.registry import register

    with pytest.raises(ValueError, match="'mlp' registered twice"):
        register("mlp")(type("OtherMlp", (nn.Module,), {}))
    assert register("mlp")(FFN["mlp"]) is FFN["mlp"]  # re-registering the same class (a module reload) is fine


def test_forward_passes_make_no_host_sync(monkeypatch):
    """MoE, CHESS and the self-guided structured FFNs keep their per-forward statistics as tensors: no .item(),
    float() or bool() of a tensor in forward (each is a device sync that stalls training)."""
    from core.ffn import build_ffn, calibrate_chess, set_guidance

    x = torch.randn(4, 6, 16)
    moe, chess, low = build_ffn("moe", 16, experts=4, top_k=2), build_ffn("chess", 16), build_ffn("lowrank", 16)
    calibrate_chess(chess, [x], 0.5)
    set_guidance(low, 0.5)

    def sync(*a, **k):
        raise AssertionError("host sync in forward")

    for name in ("item", "__float__", "__bool__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, sync)
    for m in (moe, chess, low):
        m(x)
    monkeypatch.undo()
    assert 0 < float(chess.sparsity) < 1 and 0 <= float(moe.dropped) < 1


@pytest.mark.parametrize("seed", [0, 2, 4])
@pytest.mark.parametrize("budget", [1.0, 0.5])
def test_duo_oracle_search_finds_the_brute_force_optimum_on_a_tiny_case(seed, budget):
    """2 Duo layers x 3 independent tokens: all 3^6 route assignments within the budget, against the search."""
    import itertools

    torch.manual_seed(seed)
    model = Encoder(2, 8, mixer="none", ffn="duo", norm="pre", final_norm=False).eval()
    x, target = torch.randn(1, 3, 8), torch.randn(1, 3, 8)
    loss = lambda m: (m(x) - target).pow(2).mean(-1).flatten()  # noqa: E731
    layers = [b.ffn for b in model.blocks]
    _, best = oracle_routes(model, loss, budget=budget)
    brute = float("inf")
    with torch.no_grad():
        for combo in itertools.product(range(3), repeat=6):
            r = torch.tensor(combo).view(2, 1, 3)
            if sum(torch.tensor(m.cost)[r[i]].sum() for i, m in enumerate(layers)) / 6 > budget + 1e-6:
                continue
            for i, m in enumerate(layers):
                m.route = r[i]
            brute = min(brute, float(loss(model).mean()))
    assert float(best) == pytest.approx(brute, rel=1e-6)


def test_duo_router_loss_is_cross_entropy_and_training_it_learns_the_target_routes():
    torch.manual_seed(0)
    f = build_ffn("duo", 8, hidden=32).eval()
    x = torch.randn(64, 8)
    target = (x[:, 0] > 0.5).long() * 2 + (x[:, 0].abs() <= 0.5).long()  # a route learnable from the input
    f(x)
    torch.testing.assert_close(f.router_loss(target), F.cross_entropy(f.router(x), target))
    opt = torch.optim.Adam(f.router.parameters(), lr=0.05)
    params = [p.clone() for p in (*f.big.parameters(), *f.small.parameters())]
    for _ in range(300):
        f(x)
        loss = f.router_loss(target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    f(x)
    assert bool((f.last_route == 2).all())  # not yet marked ready: every token takes the big FFN
    f.router_ready.fill_(True)
    f(x)
    assert float((f.last_route == target).float().mean()) > 0.9  # the served routes follow the target
    assert all(torch.equal(a, b) for a, b in zip(params, (*f.big.parameters(), *f.small.parameters())))
