"""PyTorch import/export: every accepted form gives bitwise the same TanhRNN; torch's own forward is the reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import schurjax as sj
from schurjax.rnn import TanhRNN

torch = pytest.importorskip("torch")
nn = torch.nn

FIELDS = ("W_in", "W_rec", "b", "W_out", "b_out")


class Net(nn.Module):
    """A typical user model: x -> nn.RNN -> nn.Linear."""

    def __init__(self, n_in=3, n=12, n_out=2, *, batch_first=True, bias=True):
        super().__init__()
        self.rnn = nn.RNN(n_in, n, nonlinearity="tanh", batch_first=batch_first, bias=bias)
        self.readout = nn.Linear(n, n_out, bias=bias)

    def forward(self, x):
        return self.readout(self.rnn(x)[0])


def same(a: TanhRNN, b: TanhRNN) -> bool:
    return all(np.array_equal(np.asarray(getattr(a, f)), np.asarray(getattr(b, f))) for f in FIELDS)


def one_line(info) -> str:
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("batch_first,bias", [(True, True), (False, True), (True, False)])
def test_four_ways_bitwise_and_round_trip(tmp_path, batch_first, bias):
    torch.manual_seed(0)
    net = Net(batch_first=batch_first, bias=bias)
    if bias:
        with torch.no_grad():
            net.rnn.bias_hh_l0.normal_()  # both biases nonzero: b = bias_ih + bias_hh
    ref = TanhRNN.from_torch(net.rnn, net.readout)  # 1. modules
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    nested = tmp_path / "ckpt.pt"
    torch.save({"model": net.state_dict(), "epoch": 3, "opt": torch.optim.Adam(net.parameters()).state_dict()}, nested)
    others = [
        TanhRNN.from_torch(net.rnn.state_dict(), net.readout.state_dict()),  # 2. two state dicts
        TanhRNN.from_torch(net.state_dict()),  # 3. a whole model's state dict, found by suffix
        TanhRNN.from_torch(str(path)),  # 4. a checkpoint path (weights_only)
        TanhRNN.from_torch(path, prefix="rnn.", readout_prefix="readout."),
        TanhRNN.from_torch(nested),  # nested checkpoint dict with optimizer state
        TanhRNN.from_torch(net),  # the whole module
        TanhRNN.from_torch(net.rnn, net.readout.state_dict()),
    ]
    assert all(same(ref, m) for m in others)
    # independent expectation of the weights
    sd = {k: v.detach().numpy().astype(np.float64) for k, v in net.state_dict().items()}
    b = sd.get("rnn.bias_ih_l0", 0) + sd.get("rnn.bias_hh_l0", 0) + np.zeros(12)
    np.testing.assert_array_equal(np.asarray(ref.b), b.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(ref.W_rec), sd["rnn.weight_hh_l0"].astype(np.float32))
    # to_torch round trip
    rnn2, lin2 = ref.to_torch(batch_first=batch_first)
    assert rnn2.batch_first == batch_first and same(TanhRNN.from_torch(rnn2, lin2), ref)


def test_torch_forward_float64_matches_rollout():
    torch.manual_seed(1)
    net = Net(n_in=2, n=24, n_out=3, batch_first=True)
    with torch.no_grad():
        net.rnn.weight_hh_l0.mul_(1.8)  # strong recurrence: the dynamics matter over 60 steps
    model = TanhRNN.from_torch(net.state_dict())
    x = torch.randn(4, 60, 2, dtype=torch.float64)
    ref = Net(n_in=2, n=24, n_out=3).double()
    ref.load_state_dict({k: v.double() for k, v in net.state_dict().items()})
    with torch.no_grad():
        h64, _ = ref.rnn(x)
        y64 = ref.readout(h64).numpy()
    h, y = jax.vmap(model.rollout)(jnp.asarray(x.numpy(), jnp.float32))
    assert np.abs(np.asarray(h) - h64.numpy()).max() < 2e-5
    assert np.abs(np.asarray(y) - y64).max() < 2e-5
    assert np.abs(np.diff(y64, axis=1)).max() > 0.1  # not a trivial output


def test_refusals_say_what_is_supported(tmp_path):
    torch.manual_seed(2)
    gru, lstm = nn.GRU(3, 8), nn.LSTM(3, 8)
    lin = nn.Linear(8, 2)
    relu = nn.RNN(3, 8, nonlinearity="relu")
    two = nn.RNN(3, 8, num_layers=2)
    bi = nn.RNN(3, 8, bidirectional=True)
    sup = r"schurjax supports a one-layer unidirectional torch\.nn\.RNN\(nonlinearity='tanh'\)"
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    pickled = tmp_path / "whole.pt"
    torch.save(Net(), pickled)  # a pickled module: refused, never unpickled
    eqx_file = tmp_path / "m.eqx"
    sj.save_model(eqx_file, TanhRNN(3, 4, 2, key=jax.random.key(0)))

    class TwoRNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.head = nn.RNN(3, 8), nn.RNN(3, 8), nn.Linear(8, 2)

    class WithEncoder(Net):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(5, 3)

    cases = [
        (lambda: TanhRNN.from_torch(gru, lin), r"rnn is a torch\.nn\.GRU; " + sup),
        (lambda: TanhRNN.from_torch(lstm, lin), r"is a torch\.nn\.LSTM; " + sup),
        (lambda: TanhRNN.from_torch(gru.state_dict(), lin.state_dict()), r"holds a torch\.nn\.GRU .*\(3n, n\)"),
        (
            lambda: TanhRNN.from_torch(
                {"rnn." + k: v for k, v in lstm.state_dict().items()} | {"fc.weight": lin.weight}
            ),
            r"holds a torch\.nn\.LSTM",
        ),
        (lambda: TanhRNN.from_torch(relu, lin), r"is a torch\.nn\.RNN\(nonlinearity='relu'\); " + sup),
        (lambda: TanhRNN.from_torch(two, lin), r"torch\.nn\.RNN\(num_layers=2\); " + sup),
        (lambda: TanhRNN.from_torch(two.state_dict(), lin.state_dict()), r"looks multi-layer .*weight_hh_l1"),
        (lambda: TanhRNN.from_torch(bi.state_dict(), lin.state_dict()), r"looks bidirectional"),
        (lambda: TanhRNN.from_torch(text), r"'.*notes\.txt' is not a PyTorch checkpoint \(torch\.load\(weights_only"),
        (lambda: TanhRNN.from_torch(eqx_file), r"m\.eqx' is not a PyTorch checkpoint"),
        (lambda: TanhRNN.from_torch(pickled), r"holds pickled Python objects .*save model\.state_dict\(\) instead"),
        (lambda: TanhRNN.from_torch(tmp_path / "none.pt"), r"no checkpoint file at"),
        (
            lambda: TanhRNN.from_torch(TwoRNN().state_dict()),
            r"several recurrent layers, prefixes \['a\.', 'b\.'\]; "
            r"pass prefix=",
        ),
        (lambda: TanhRNN.from_torch(TwoRNN().state_dict(), prefix="c."), r"prefix='c\.' matches no .*\['a\.', 'b"),
        (lambda: TanhRNN.from_torch(WithEncoder().state_dict()), r"other weights \['encoder\.weight'\] besides rnn"),
        (lambda: TanhRNN.from_torch({"x": torch.zeros(2)}), r"holds no torch\.nn\.RNN weights"),
        (lambda: TanhRNN.from_torch(Net().rnn.state_dict()), r"holds no torch\.nn\.Linear readout"),
        (lambda: TanhRNN.from_torch(Net().rnn, relu), r"readout must be a torch\.nn\.Linear, got torch\.nn\.RNN"),
        (lambda: TanhRNN.from_torch(42), r"rnn must be a torch\.nn\.RNN, a model, a state dict or a checkpoint"),
        (
            lambda: TanhRNN.from_torch(
                {
                    "rnn.weight_hh_l0": torch.full((8, 8), float("nan")),
                    "rnn.weight_ih_l0": torch.zeros(8, 3),
                    "fc.weight": torch.zeros(2, 8),
                }
            ),
            r"64 NaN/inf",
        ),
    ]
    for call, msg in cases:
        with pytest.raises(ValueError, match=r"TanhRNN\.from_torch: .*" + msg) as info:
            call()
        one_line(info)
    # giving both prefixes imports the RNN and readout of a bigger model (the encoder is the user's business)
    enc = WithEncoder()
    assert same(
        TanhRNN.from_torch(enc.state_dict(), prefix="rnn.", readout_prefix="readout."),
        TanhRNN.from_torch(enc.rnn, enc.readout),
    )


def test_import_torch_writes_eqx_with_task(tmp_path):
    torch.manual_seed(3)
    net = Net(n_in=3, n=10, n_out=3)  # fits flipflop (bits=3)
    pt = tmp_path / "model.pt"
    torch.save({"state_dict": net.state_dict()}, pt)
    out = sj.store.checkpoint.import_torch(pt, tmp_path / "m.eqx", task="flipflop")
    model, meta = sj.load_model(out)
    assert same(model, TanhRNN.from_torch(net.rnn, net.readout))
    assert meta["task"] == {"name": "flipflop", "params": sj.tasks.get("flipflop").params()}
    assert meta["source"]["torch_checkpoint"] == "model.pt" and len(meta["source"]["sha256"]) == 64
    with pytest.raises(
        ValueError,
        match=r"import_torch: the model has n_in=3, n_out=3 but task 'copy' has n_in=3, "
        r"n_out=2",
    ):
        sj.store.checkpoint.import_torch(pt, tmp_path / "x.eqx", task="copy")
    with pytest.raises(ValueError, match=r"import_torch: path must end with '\.eqx'"):
        sj.store.checkpoint.import_torch(pt, tmp_path / "x.pt")
