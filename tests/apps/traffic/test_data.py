"""Labels, honest splits, shortcut masking, burst tokens, the model, on nDPI's real captures."""
import numpy as np
import pytest
import torch

from apps.traffic.data import TrafficData
from apps.traffic.features import PACKET_FIELDS, SHORTCUTS, burst_ids, flow_tokens, stat_names
from apps.traffic.flows import ROW, Flow
from apps.traffic.labels import FlowLabelTable
from apps.traffic.metrics import scores
from apps.traffic.models import NetFound
from core.datadir import DataError


@pytest.fixture(scope="module")
def dm(data_root):
    d = TrafficData(split="group:0")
    d.setup()
    return d


def test_ndpi_labels_join_on_the_five_tuple_in_either_direction(dm, data_root):
    table = FlowLabelTable(data_root / "traffic/ndpi/flow_labels.csv", "master_proto")
    joined = sum(table.label(f) is not None for f in dm.all_flows)
    assert joined >= 0.99 * table.rows  # 5,777 DPI rows; the rest are tunnels nDPI keys by the inner flow
    f = next(f for f in dm.all_flows if table.label(f) == "DNS")
    swapped = Flow(f.capture, 0, f.proto, f.server, f.client, 0.0)
    assert table.label(swapped) == "DNS"


def test_grouped_folds_never_share_a_capture_and_leaky_ones_do(dm):
    caps = {s: {dm.flows[i].capture for i in dm.sets[s]["index"]} for s in ("train", "val", "test")}
    assert not (caps["train"] & caps["test"]) and not (caps["val"] & caps["test"]) and not (caps["train"] & caps["val"])
    assert dm.class_names == ["DNS", "HTTP", "NetBIOS", "QUIC", "STUN", "TLS", "WhatsApp"]
    leaky = TrafficData(split="leaky:0")
    leaky.setup()
    lc = {s: {leaky.flows[i].capture for i in leaky.sets[s]["index"]} for s in ("train", "test")}
    assert len(lc["train"] & lc["test"]) > 20
    # the leaky control scores the same task: the same classes (once it took DNScrypt, Gnutella, ... too)
    assert leaky.class_names == dm.class_names and leaky.dropped == dm.dropped
    assert "in 2 captures < --data.min_captures 5" in dm.dropped["Gnutella"]
    # its pretraining flows exclude every validation and test flow
    held = {id(leaky.flows[i]) for s in ("val", "test") for i in leaky.sets[s]["index"]}
    pre = leaky.pretrain_flows()
    assert pre and not {id(f) for f in pre} & held
    # one capture cannot dominate: at most 50 flows per capture and class
    counts = {}
    for s in dm.sets.values():
        for i, y in zip(s["index"], s["y"]):
            key = (dm.flows[i].capture, int(y))
            counts[key] = counts.get(key, 0) + 1
    assert max(counts.values()) == 50


def test_shortcuts_are_masked_unless_unmasked(dm):
    s = dm.sets["train"]
    cols = [PACKET_FIELDS.index(f) for f in ("ttl", "ip_id", "seq", "tcp_ts", "window")]
    assert (s["packets"][..., cols] == 0).all() and (s["flow"][:, 1:] == 0).all()
    assert not any(n.endswith(("port", "ttl", "ip_id0", "seq0", "tcp_ts0", "window0")) for n in dm.stat_names)
    um = TrafficData(split="group:0", unmask=list(SHORTCUTS))
    um.setup()
    t = um.sets["train"]
    assert all((t["packets"][..., c] != 0).any() for c in cols) and (t["flow"][:, 1] != 0).all()
    assert len(um.stat_names) == len(stat_names(SHORTCUTS)) > len(dm.stat_names)
    with pytest.raises(DataError, match=r"--data.unmask: unknown field\(s\) \['mac'\]"):
        TrafficData(unmask=["mac"])


def test_bursts_split_at_direction_changes_and_gaps():
    f = Flow("x", 0, 6, (b"\x01" * 4, 1000), (b"\x02" * 4, 80), 0.0)
    # ts, dir: out, out, in, in (2 s later: a new burst), out
    rows = [(0.0, 0), (0.01, 0), (0.02, 1), (2.5, 1), (2.6, 0)]
    f.rows = np.array([(t, d, 100 + i, 40, 0x18, 512, 64, 1, 1, 0) for i, (t, d) in enumerate(rows)], dtype=float)
    assert burst_ids(f.rows, 1.0).tolist() == [0, 0, 1, 2, 3]
    pk, bm, fl, _ = flow_tokens(f, burst_gap=1.0)
    assert (pk[:4, :, 0] > 0).sum(1).tolist() == [2, 1, 1, 1] and (pk[4:] == 0).all()
    assert bm[:4, 0].tolist() == [1, 2, 2, 1] and (bm[4:] == 0).all()
    assert bm[:4, 1].tolist() == [3, 2, 2, 2]  # 1 + packets
    assert fl.tolist() == [1, 0, 0]
    pk2, *_ = flow_tokens(f, burst_gap=10.0)
    assert (pk2[:3, :, 0] > 0).sum(1).tolist() == [2, 2, 1]
    assert len(ROW) == f.rows.shape[1]


def test_capture_level_scores_vote_with_mean_probabilities():
    y = np.array([0, 0, 0, 1, 1])
    prob = np.array([[0.9, 0.1], [0.4, 0.6], [0.4, 0.6], [0.2, 0.8], [0.6, 0.4]])
    group = np.array([0, 0, 0, 1, 1])
    assert scores(y, prob, group, "flow")["acc"] == pytest.approx(0.4)
    assert scores(y, prob, group, "capture") == {"macro_f1": 1.0, "acc": 1.0}


def test_netfound_swaps_its_ffn_and_scores_each_flow_alone(dm):
    torch.manual_seed(0)
    s = dm.sets["train"]
    x = [torch.from_numpy(s[k][:8]) for k in ("packets", "bursts", "flow", "payload")]
    m = NetFound(len(dm.class_names), ffn="swiglu").eval()
    assert type(m.flow_encoder.blocks[0].ffn).__name__ == "SwiGLU"
    out = m(*x)
    assert out.shape == (8, len(dm.class_names)) and torch.isfinite(out).all()
    # a flow's logits do not depend on the other flows in its batch (empty bursts are skipped per flow)
    assert torch.allclose(m(*(t[:1] for t in x)), out[:1], atol=1e-5)


def test_label_csv_errors_name_the_file_and_column(tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text("pcap,src_ip,src_port,dst_ip,dst_port,app\nx.pcap,1.1.1.1,1,2.2.2.2,2,DNS\n")
    with pytest.raises(DataError, match=r"labels.csv: line 1: missing column\(s\) \['l4_proto', 'master_proto'\]"):
        FlowLabelTable(bad, "master_proto")


def test_pretraining_never_sees_a_validation_or_test_capture_and_takes_extra_corpora(dm, data_root):
    held = {dm.flows[i].capture for s in ("val", "test") for i in dm.sets[s]["index"]}
    base = TrafficData(split="group:0", pretrain_paths=[])
    base.setup()
    own = base.pretrain_flows()
    assert own and not {f.capture for f in own} & held
    extra = TrafficData(split="group:0", pretrain_paths=[str(data_root / "traffic/stratosphere"),
                                                         str(data_root / "traffic/ndpi/pcap")])
    extra.setup()
    more = extra.pretrain_flows()
    strato = {f.name for f in (data_root / "traffic/stratosphere").rglob("*") if f.is_file()}
    added = more[len(own):]
    assert added and {f.capture for f in added} <= strato  # nDPI's own captures are not added a second time
    assert not {f.capture for f in more} & held


def test_by_default_pretraining_takes_every_unlabelled_capture_here(dm, data_root):
    """nDPI's labelled captures (no validation or test one) plus all of Zeek's, nPrint's and Stratosphere's."""
    names = {f.capture for f in dm.pretrain_flows()}
    for corpus in ("zeek", "nprint", "stratosphere"):
        files = {f.name for f in (data_root / "traffic" / corpus).rglob("*") if f.suffix in (".pcap", ".pcapng")}
        assert files and files & names, corpus
    held = {dm.flows[i].capture for s in ("val", "test") for i in dm.sets[s]["index"]}
    assert not names & held
    mine = TrafficData(path=str(data_root / "traffic/ndpi/pcap"), split="group:0")  # a path of the user's
    assert mine.pretrain_paths == []


def test_user_folder_labels_keep_every_label_with_enough_captures_and_say_what_they_drop(data_root):
    """Zeek's traces, a label per protocol folder: all 22 labels in >= 5 captures are kept (the 7-largest rule is
    nDPI's), and the three in fewer (pop3 3, rfb 3, sip 4 captures) are dropped with that reason."""
    d = TrafficData(path=str(data_root / "traffic/zeek"), labels="folders", level="capture", per_capture=0)
    d.setup()
    assert len(d.class_names) == 22 and set(d.dropped) == {"pop3", "rfb", "sip"}
    assert d.dropped["sip"] == "in 4 captures < --data.min_captures 5"
    assert d.fingerprint()["labels_dropped"] == 3


def test_masked_fields_cannot_be_copied_from_visible_burst_tokens(dm):
    """A guesser that copies a masked packet's size from its one-packet burst's bytes token and its inter-arrival
    time from its burst's gap token (the first packet) beats the majority token by far when only the packet fields
    are hidden, and does no better than the majority once ``hide`` also hides the tokens they can be read from."""
    from apps.traffic.features import BURST_FIELDS
    from apps.traffic.task import MASKED_FIELDS, hide

    s = dm.sets["train"]
    packets, bursts = torch.from_numpy(s["packets"]), torch.from_numpy(s["bursts"])
    payload = torch.from_numpy(s["payload"])
    real = packets[..., 0] > 0
    masked = real & (torch.rand(real.shape, generator=torch.Generator().manual_seed(0)) < 0.15)
    cols = [PACKET_FIELDS.index(f) for f in MASKED_FIELDS]

    def guess_accuracy(b, field, burst_field, eligible):
        truth = packets[..., PACKET_FIELDS.index(field)][masked]
        copied = b[..., BURST_FIELDS.index(burst_field)][:, :, None].expand_as(masked)[masked]
        use = eligible[masked] & (copied > 0)
        majority = torch.mode(truth).values
        guess = torch.where(use, copied, majority)
        return float((guess == truth).float().mean()), float((truth == majority).float().mean())

    one_packet = (bursts[..., BURST_FIELDS.index("packets")] == 2)[:, :, None].expand_as(masked)
    first = torch.zeros_like(masked)
    first[..., 0] = True
    only_fields = bursts  # what the pretrainer hid before: the packet fields, not the burst tokens
    _, hidden, _ = hide(packets, bursts, payload, masked, cols)
    for field, burst_field, eligible in (("size", "bytes", one_packet), ("iat", "gap", first)):
        leaky, floor = guess_accuracy(only_fields, field, burst_field, eligible)
        tight, _ = guess_accuracy(hidden, field, burst_field, eligible)
        assert leaky > floor + 0.2, (field, leaky, floor)
        assert tight <= floor + 1e-9, (field, tight, floor)


@pytest.mark.parametrize("hierarchy,sees_other_bursts", [("interleaved", True), ("stacked", False)])
def test_interleaved_bursts_see_the_flow_after_one_layer(hierarchy, sees_other_bursts):
    """netFound's hierarchy: the second burst layer's input for burst 0 (its CLS, written back by the first flow
    layer) changes when another burst's packets change; stacked burst layers never see other bursts."""
    torch.manual_seed(0)
    m = NetFound(n_classes=3, bursts=4, burst_packets=3, hierarchy=hierarchy).eval()
    packets = torch.randint(1, 3, (1, 4, 3, len(PACKET_FIELDS)))
    bursts = torch.randint(1, 3, (1, 4, 4))
    flow = torch.ones(1, 3, dtype=torch.long)
    seen = []
    m.burst_encoder.blocks[1].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach().clone()))
    other = packets.clone()
    other[0, 2, :, PACKET_FIELDS.index("size")] = torch.tensor([20, 25, 30])  # burst 2's packet sizes only
    with torch.no_grad():
        for p in (packets, other):
            m.encode(p, bursts, flow, torch.zeros(1, 4, 3, 0, dtype=torch.long))
    changed = (seen[0][0] - seen[1][0]).abs().max() > 1e-6  # burst 0's tokens entering the second burst layer
    assert bool(changed) == sees_other_bursts
    with pytest.raises(ValueError, match="burst_layers .* must equal"):
        NetFound(n_classes=3, burst_layers=2, flow_layers=1)


def test_the_majority_floor_counts_the_units_the_task_scores():
    """At capture level the floor's class is the most common among training captures, not among their flows (one
    capture of many flows must not decide it)."""
    from types import SimpleNamespace

    from apps.traffic.baseline import majority_scores

    train = {"y": np.array([0] * 10 + [1, 1, 1, 2]), "group": np.array(["a"] * 10 + ["b", "c", "d", "e"])}
    test = {"y": np.array([1, 1, 1, 0]), "group": np.array(["f", "f", "g", "h"])}
    dm = SimpleNamespace(sets={"train": train, "test": test}, class_names=["x", "y", "z"], level="capture")
    assert majority_scores(dm)["floor_majority_acc"] == pytest.approx(2 / 3)  # class 1: 3 of 5 training captures
    dm.level = "flow"
    assert majority_scores(dm)["floor_majority_acc"] == pytest.approx(1 / 4)  # class 0: 10 of 14 training flows
