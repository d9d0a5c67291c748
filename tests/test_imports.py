"""Importing what users have: ReLU nn.RNN, NeuroGym CTRNN, PsychRNN/named .npz, low-rank RNNs; exporting every form.

Each imported model is checked against the source itself: a live torch forward (nn.RNN, CTRNN, low-rank modules,
the exported module) or an independent float64 NumPy rollout of the source's own equations (PsychRNN files).
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import schurjax as sj
from schurjax.cli import main
from schurjax.rnn import FORMS, NONLINEARITIES, RateRNN, TanhRNN
from schurjax.store import checkpoint, torch_io

torch = pytest.importorskip("torch")
nn = torch.nn

FIELDS = ("W_in", "W_rec", "b", "W_out", "b_out")
TOL = 1e-5


def close(y, ref) -> bool:
    """float32 against the float64 source: max |y - ref| <= 1e-5, relative to the outputs' scale when it exceeds 1."""
    return np.abs(np.asarray(y, np.float64) - ref).max() <= TOL * max(1.0, np.abs(ref).max())


def same(a, b) -> bool:
    arrays = all(np.array_equal(np.asarray(getattr(a, f)), np.asarray(getattr(b, f))) for f in FIELDS)
    h0 = (a.h0 is None and b.h0 is None) or (
        a.h0 is not None and b.h0 is not None and np.array_equal(np.asarray(a.h0), np.asarray(b.h0))
    )
    return arrays and h0 and a.dynamics == b.dynamics and type(a) is type(b)


def outputs(model, x) -> np.ndarray:
    """schurjax outputs (B, T, n_out) of a batch x (B, T, n_in)."""
    return np.asarray(jax.vmap(model)(jnp.asarray(x, jnp.float32)))


def one_line(info, *fragments) -> str:
    msg = str(info.value)
    assert "\n" not in msg, msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


def no_files_left(folder) -> list[str]:
    return sorted(os.listdir(folder))


# ---------------------------------------------------------------------------------------------------- NeuroGym
class CTRNN(nn.Module):
    """Continuous-time RNN, as NeuroGym's example defines it (input (seq_len, batch, input_size))."""

    def __init__(self, input_size, hidden_size, dt=None, **kwargs):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.tau = 100
        if dt is None:
            alpha = 1
        else:
            alpha = dt / self.tau
        self.alpha = alpha
        self.oneminusalpha = 1 - alpha

        self.input2h = nn.Linear(input_size, hidden_size)
        self.h2h = nn.Linear(hidden_size, hidden_size)

    def init_hidden(self, input_shape):
        batch_size = input_shape[1]
        return torch.zeros(batch_size, self.hidden_size)

    def recurrence(self, input, hidden):
        pre_activation = self.input2h(input) + self.h2h(hidden)
        h_new = torch.relu(hidden * self.oneminusalpha + pre_activation * self.alpha)
        return h_new

    def forward(self, input, hidden=None):
        if hidden is None:
            hidden = self.init_hidden(input.shape).to(input.device)
        output = []
        steps = range(input.size(0))
        for i in steps:
            hidden = self.recurrence(input[i], hidden)
            output.append(hidden)
        output = torch.stack(output, dim=0)
        return output, hidden


class RNNNet(nn.Module):
    """NeuroGym's example network: CTRNN + a Linear readout named fc."""

    def __init__(self, input_size, hidden_size, output_size, **kwargs):
        super().__init__()
        self.rnn = CTRNN(input_size, hidden_size, **kwargs)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        rnn_activity, _ = self.rnn(x)
        out = self.fc(rnn_activity)
        return out, rnn_activity


def _torch64(net):
    """A float64 copy of a module (the live reference, free of float32 rounding)."""
    import copy

    return copy.deepcopy(net).double()


def test_neurogym_ctrnn_module_state_dict_and_file(tmp_path):
    torch.manual_seed(10)
    net = RNNNet(3, 24, 3, dt=20)  # alpha = 20 / 100 = 0.2
    with torch.no_grad():
        net.rnn.h2h.weight.mul_(3.0)  # strong recurrence: the dynamics matter
        net.rnn.h2h.bias.normal_()
    model = RateRNN.from_torch(net)
    assert model.dynamics == sj.rnn.Dynamics(0.2, "relu", "post") and model.h0 is None
    assert same(model, torch_io.from_ctrnn(net.rnn, net.fc)) and same(model, RateRNN.from_torch(net.rnn, net.fc))
    assert same(model, torch_io.from_ctrnn(net.state_dict(), alpha=0.2))
    torch.save({"model": net.state_dict(), "epoch": 3}, tmp_path / "ctrnn.pt")
    assert same(model, torch_io.load_file(tmp_path / "ctrnn.pt", alpha=0.2)[0])
    np.testing.assert_array_equal(
        np.asarray(model.b), (net.rnn.input2h.bias + net.rnn.h2h.bias).detach().double().numpy().astype(np.float32)
    )
    x = torch.randn(40, 5, 3, dtype=torch.float64)  # NeuroGym is time-major
    with torch.no_grad():
        net64 = _torch64(net)  # its init_hidden is float32: start it from float64 zeros, as the same h = 0
        y64 = net64.fc(net64.rnn(x, torch.zeros(5, 24, dtype=torch.float64))[0]).numpy().transpose(1, 0, 2)
    y = outputs(model, x.numpy().transpose(1, 0, 2))
    assert close(y, y64) and np.abs(np.diff(y64, axis=1)).max() > 0.1
    # the tanh variant, when given
    assert torch_io.from_ctrnn(net, nonlinearity="tanh").nonlinearity == "tanh"
    # CLI: --layout neurogym --alpha recorded; load_model gives back the same RateRNN
    out = tmp_path / "ctrnn.eqx"
    assert (
        main(
            [
                "import",
                str(tmp_path / "ctrnn.pt"),
                "--out",
                str(out),
                "--layout",
                "neurogym",
                "--alpha",
                "0.2",
                "--nonlinearity",
                "relu",
            ]
        )
        == 0
    )
    loaded, meta = sj.load_model(out)
    assert same(loaded, model)
    assert meta["format"] == checkpoint.FORMAT_RATE
    assert meta["dynamics"] == {"alpha": 0.2, "nonlinearity": "relu", "form": "post", "h0": False}
    assert meta["source"]["layout"] == "neurogym" and meta["source"]["alpha"] == 0.2


def test_neurogym_refusals():
    torch.manual_seed(11)
    net = RNNNet(3, 6, 2, dt=20)
    sd = net.state_dict()
    cases = [
        (lambda: torch_io.from_ctrnn(sd), "does not store alpha (= dt / tau); pass alpha="),
        (lambda: torch_io.from_ctrnn(net, alpha=0.5), "alpha=0.5 was given but the RNNNet module stores alpha=0.2"),
        (lambda: torch_io.from_ctrnn(sd | {"extra.weight": torch.zeros(2, 3)}, alpha=0.2), "holds keys"),
        (lambda: torch_io.from_ctrnn({**sd, "rnn.h2h.weight": torch.zeros(6, 5)}, alpha=0.2), "must be square"),
        (
            lambda: torch_io.from_ctrnn({**sd, "rnn.h2h.bias": torch.full((6,), float("inf"))}, alpha=0.2),
            "NaN/inf",
        ),
        (lambda: torch_io.from_ctrnn({"fc.weight": torch.zeros(2, 6)}, alpha=0.2), "holds no NeuroGym CTRNN"),
        (lambda: torch_io.from_ctrnn(sd, alpha=1.5), "alpha must be a real number in (0, 1]"),
        (lambda: torch_io.from_ctrnn(sd, alpha=0.2, nonlinearity="sigmoid"), "nonlinearity must be one of"),
        (lambda: RateRNN.from_torch(sd), "does not store alpha"),
    ]
    for call, frag in cases:
        with pytest.raises(ValueError) as info:
            call()
        one_line(info, frag)
    # a CTRNN variant that stores dt and tau but no alpha
    del net.rnn.alpha
    net.rnn.dt = 5
    assert torch_io.from_ctrnn(net).alpha == 0.05


# ------------------------------------------------------------------------------------------------ torch nn.RNN
def test_relu_nn_rnn_module_and_state_dict(tmp_path):
    torch.manual_seed(12)
    rnn, lin = nn.RNN(2, 16, nonlinearity="relu", batch_first=True), nn.Linear(16, 3)
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(1.5)
    model = RateRNN.from_torch(rnn, lin)
    assert type(model) is RateRNN and model.dynamics == sj.rnn.Dynamics(1.0, "relu", "rate")
    assert same(model, RateRNN.from_torch(rnn.state_dict(), lin.state_dict(), nonlinearity="relu"))
    x = torch.randn(4, 30, 2, dtype=torch.float64)
    with torch.no_grad():
        y64 = _torch64(lin)(_torch64(rnn)(x)[0]).numpy()
    assert close(outputs(model, x.numpy()), y64) and np.abs(y64).max() > 0.1
    # a state dict does not say relu: tanh unless given, and the module's word wins over a wrong one
    assert isinstance(RateRNN.from_torch(rnn.state_dict(), lin.state_dict()), TanhRNN)
    with pytest.raises(ValueError) as info:
        RateRNN.from_torch(rnn, lin, nonlinearity="tanh")
    one_line(info, "nonlinearity='tanh' was given but rnn is nonlinearity='relu'")
    with pytest.raises(ValueError) as info:
        TanhRNN.from_torch(rnn.state_dict(), lin.state_dict(), nonlinearity="relu")
    one_line(info, "TanhRNN.from_torch: a TanhRNN is tanh only")
    # the CLI: --nonlinearity relu for a bare state dict
    torch.save({"rnn": rnn.state_dict(), "readout": lin.state_dict()}, tmp_path / "relu.pt")
    out = tmp_path / "relu.eqx"
    assert main(["import", str(tmp_path / "relu.pt"), "--out", str(out), "--nonlinearity", "relu"]) == 0
    assert same(sj.load_model(out)[0], model)


def test_nn_rnn_refusals():
    torch.manual_seed(13)
    rnn, lin = nn.RNN(3, 8), nn.Linear(8, 2)
    sd = {**{f"rnn.{k}": v for k, v in rnn.state_dict().items()}, "fc.weight": lin.weight, "fc.bias": lin.bias}
    no_hh = {k: v for k, v in sd.items() if k != "rnn.bias_hh_l0"}
    sup = "schurjax supports a one-layer unidirectional torch.nn.RNN(nonlinearity='tanh' or 'relu')"
    cases = [
        (lambda: RateRNN.from_torch(no_hh), "has rnn.bias_ih_l0 but no rnn.bias_hh_l0"),
        (lambda: TanhRNN.from_torch(no_hh), "TanhRNN.from_torch: the state dict has rnn.bias_ih_l0 but no"),
        (lambda: RateRNN.from_torch(nn.GRU(3, 8), lin), "rnn is a torch.nn.GRU; " + sup),
        (lambda: RateRNN.from_torch(nn.LSTM(3, 8), lin), "rnn is a torch.nn.LSTM; " + sup),
        (lambda: RateRNN.from_torch(nn.RNN(3, 8, num_layers=2), lin), "torch.nn.RNN(num_layers=2); " + sup),
        (lambda: RateRNN.from_torch(nn.RNN(3, 8, bidirectional=True), lin), "bidirectional=True"),
        (lambda: RateRNN.from_torch(sd, alpha=0.5), "alpha must be None or 1 for a torch.nn.RNN"),
        (lambda: RateRNN.from_torch({**sd, "rnn.weight_hh_l0": torch.zeros(8, 7)}), "must be square"),
        (lambda: RateRNN.from_torch({**sd, "fc.weight": torch.full((2, 8), float("nan"))}), "16 NaN/inf"),
        (lambda: RateRNN.from_torch(sd, nonlinearity="softplus"), "nonlinearity must be 'tanh' or 'relu'"),
    ]
    for call, frag in cases:
        with pytest.raises(ValueError) as info:
            call()
        one_line(info, frag)


# ---------------------------------------------------------------------------------------------------- PsychRNN
def _psychrnn_weights(rng, n=20, n_in=3, n_out=2, dale_ratio=0.8):
    """Raw PsychRNN variables (before get_effective_W_*), with Dale's law and sparse connectivity."""
    dale_vec = np.ones(n)
    dale_vec[int(dale_ratio * n) :] = -1
    dale_rec = np.diag(dale_vec)
    dale_vec[int(dale_ratio * n) :] = 0
    dale_out = np.diag(dale_vec)
    return {
        "W_in": rng.normal(size=(n, n_in)),
        "W_rec": rng.normal(size=(n, n)) * 1.5 / math.sqrt(n),
        "W_out": rng.normal(size=(n_out, n)) / math.sqrt(n),
        "b_rec": rng.normal(size=n) * 0.3,
        "b_out": rng.normal(size=n_out) * 0.3,
        "init_state": rng.normal(size=(1, n)) * 0.5,
        "Dale_rec": dale_rec,
        "Dale_out": dale_out,
        "input_connectivity": (rng.random((n, n_in)) < 0.8).astype(float),
        "rec_connectivity": (rng.random((n, n)) < 0.6).astype(float),
        "output_connectivity": (rng.random((n_out, n)) < 0.9).astype(float),
        "dale_ratio": np.float64(dale_ratio),
    }


def _psychrnn_effective(w):
    """PsychRNN's RNN.get_effective_W_rec/_in/_out with Dale's law on."""
    return (
        np.abs(w["W_rec"] * w["rec_connectivity"]) @ w["Dale_rec"],
        np.abs(w["W_in"] * w["input_connectivity"]),
        np.abs(w["W_out"] * w["output_connectivity"]) @ w["Dale_out"],
    )


def _psychrnn_rollout(w, x, alpha):
    """PsychRNN's Basic.forward_pass in float64 (no noise): x (B, T, n_in) -> outputs (B, T, n_out)."""
    W_rec, W_in, W_out = _psychrnn_effective(w)
    relu = lambda a: np.maximum(a, 0.0)  # noqa: E731 - PsychRNN's default transfer function
    state = np.tile(w["init_state"], (x.shape[0], 1))
    ys = []
    for t in range(x.shape[1]):
        state = (1 - alpha) * state + alpha * (relu(state) @ W_rec.T + x[:, t] @ W_in.T + w["b_rec"])
        ys.append(relu(state) @ W_out.T + w["b_out"])
    return np.stack(ys, axis=1)


def test_psychrnn_npz_with_dale_masks(tmp_path):
    rng = np.random.default_rng(14)
    w = _psychrnn_weights(rng)
    raw, saved = tmp_path / "raw.npz", tmp_path / "saved.npz"
    np.savez(raw, **w)
    eff = dict(zip(("W_rec", "W_in", "W_out"), _psychrnn_effective(w), strict=True))
    # what PsychRNN's RNN.save writes: effective W_*, plus transfer_function as a pickled object array
    np.savez(saved, **{**w, **eff}, transfer_function=np.array(len, dtype=object))
    alpha = 0.1  # dt / tau = 10 / 100
    m_raw = torch_io.from_npz(raw, alpha=alpha)
    m_saved = torch_io.from_npz(saved, layout="psychrnn", alpha=alpha)
    assert m_raw.dynamics == sj.rnn.Dynamics(alpha, "relu", "current") and m_raw.h0 is not None
    np.testing.assert_allclose(np.asarray(m_saved.W_rec), np.asarray(m_raw.W_rec), atol=1e-7)
    assert np.all(np.asarray(m_raw.W_rec)[:, 16:] <= 0) and np.all(np.asarray(m_raw.W_out)[:, 16:] == 0)
    x = rng.normal(size=(4, 60, 3))
    ref = _psychrnn_rollout(w, x, alpha)
    for m in (m_raw, m_saved):
        assert close(outputs(m, x), ref)
    assert np.abs(np.diff(ref, axis=1)).max() > 0.05
    # Dale's law off (PsychRNN writes dale_ratio=None as an object array, never read), with the optimizer slots
    # that its RNN.save also writes: the masks only
    w_off = {k: v for k, v in w.items() if k != "dale_ratio"}
    slots = {f"{k}/Adam{s}": np.zeros_like(w[k]) for k in ("W_rec", "b_rec") for s in ("", "_1")}
    np.savez(tmp_path / "off.npz", **w_off, **slots, dale_ratio=np.array(None, dtype=object))
    m_off = torch_io.from_npz(tmp_path / "off.npz", alpha=alpha)
    np.testing.assert_allclose(np.asarray(m_off.W_rec), w["W_rec"] * w["rec_connectivity"], atol=1e-7)
    assert same(torch_io.from_npz(tmp_path / "off.npz", alpha=alpha, dale=True), m_raw)
    # CLI
    out = tmp_path / "p.eqx"
    assert main(["import", str(saved), "--out", str(out), "--layout", "psychrnn", "--alpha", "0.1"]) == 0
    loaded, meta = sj.load_model(out)
    assert same(loaded, m_saved) and meta["dynamics"]["form"] == "current" and meta["dynamics"]["h0"] is True
    assert meta["source"]["layout"] == "psychrnn"


class Canary:
    """Unpickling this creates the file ``path``: an object array holding it must never be unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_object_arrays_never_run(tmp_path):
    canary = tmp_path / "canary"
    rng = np.random.default_rng(15)
    w = _psychrnn_weights(rng, n=6)
    evil = np.array(Canary(canary), dtype=object)
    np.savez(tmp_path / "p_evil.npz", **w, transfer_function=evil)  # PsychRNN's own object key: skipped, unread
    np.savez(tmp_path / "p_extra.npz", **w, notes=evil)
    np.savez(tmp_path / "n_evil.npz", W_in=np.ones((6, 1)), W_rec=evil, W_out=np.ones((1, 6)))
    assert torch_io.from_npz(tmp_path / "p_evil.npz", alpha=0.2).n_hidden == 6
    for name, frag in (("p_extra.npz", "object array 'notes'"), ("n_evil.npz", "object array 'W_rec'")):
        with pytest.raises(ValueError) as info:
            torch_io.from_npz(tmp_path / name, alpha=0.2, form="rate")
        one_line(info, frag, "never unpickles")
        assert not canary.exists()
    out = tmp_path / "x.eqx"
    assert main(["import", str(tmp_path / "n_evil.npz"), "--out", str(out), "--alpha", "0.2", "--form", "rate"]) == 2
    assert not canary.exists() and not out.exists()
    # the canary is armed: unpickling the array does create it
    with np.load(tmp_path / "n_evil.npz", allow_pickle=True) as z:
        z["W_rec"]
    assert canary.exists()


def test_named_npz_layout(tmp_path):
    rng = np.random.default_rng(16)
    model = RateRNN(2, 10, 1, alpha=0.5, nonlinearity="softplus", form="rate", learn_h0=True, key=jax.random.key(3))
    model = RateRNN.from_arrays(
        W_in=model.W_in,
        W_rec=model.W_rec,
        b=rng.normal(size=10),
        W_out=model.W_out,
        b_out=[0.3],
        alpha=0.5,
        nonlinearity="softplus",
        form="rate",
        h0=rng.normal(size=10),
    )
    arrays = {f: np.asarray(getattr(model, f)) for f in FIELDS} | {"h0": np.asarray(model.h0)}
    np.savez(tmp_path / "self.npz", **arrays, alpha=0.5, nonlinearity="softplus", form="rate")
    assert same(torch_io.from_npz(tmp_path / "self.npz"), model)
    renamed = {("J" if k == "W_rec" else k): v for k, v in arrays.items()}
    np.savez(tmp_path / "j.npz", **renamed)
    got = torch_io.from_npz(tmp_path / "j.npz", alpha=0.5, nonlinearity="softplus", form="rate", keys={"W_rec": "J"})
    assert same(got, model)
    np.savez(tmp_path / "big.npz", W_in=np.zeros((2, 1)), W_rec=np.zeros((2, 2)), W_out=np.zeros((1, 2)))
    header_bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(header_bomb, "w") as zf:  # a header that declares 1e12 x 100 elements, and no data
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 100)})
        zf.writestr("W_rec.npy", buf.getvalue())
    many = tmp_path / "many.npz"
    with zipfile.ZipFile(many, "w") as zf:  # 20 headers of 2**28 float32 each (20 GiB), no data
        for i in range(20):
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (2**28,)})
            zf.writestr(f"a{i}.npy", buf.getvalue())
    (tmp_path / "text.npz").write_text("not a zip\n")
    cases = [
        (lambda: torch_io.from_npz(tmp_path / "j.npz", alpha=0.5, form="rate"), "holds keys ['J']"),
        (lambda: torch_io.from_npz(tmp_path / "big.npz", alpha=0.5), "does not say its form; pass form="),
        (lambda: torch_io.from_npz(tmp_path / "big.npz", form="rate"), "does not store alpha"),
        (lambda: torch_io.from_npz(tmp_path / "self.npz", alpha=0.2), "alpha=0.2 was given but"),
        (lambda: torch_io.from_npz(tmp_path / "self.npz", form="post"), "form='post' was given but"),
        (lambda: torch_io.from_npz(header_bomb, alpha=0.5, form="rate"), "more than 2**28 elements"),
        (lambda: torch_io.from_npz(tmp_path / "text.npz", alpha=0.5, form="rate"), "is not an .npz file"),
        (lambda: torch_io.from_npz(many, alpha=0.5, form="rate"), "20.0 GiB of arrays, more than 4 GiB"),
        (lambda: torch_io.from_npz(tmp_path / "none.npz"), "no .npz file at"),
    ]
    for call, frag in cases:
        with pytest.raises(ValueError) as info:
            call()
        one_line(info, frag)


def test_psychrnn_refusals(tmp_path):
    rng = np.random.default_rng(17)
    w = _psychrnn_weights(rng, n=5)
    for name, edit, frag in (
        ("lstm", {"W_f": np.zeros((5, 5))}, "holds keys ['W_f'] that PsychRNN's Basic model does not save"),
        ("nob", {"b_rec": None}, "has no b_rec"),
        ("shape", {"rec_connectivity": np.ones((5, 4))}, "rec_connectivity must have shape (5, 5)"),
        ("nan", {"W_rec": np.full((5, 5), np.nan)}, "W_rec holds 25 NaN/inf"),
    ):
        arrays = {k: v for k, v in {**w, **edit}.items() if v is not None}
        np.savez(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(ValueError) as info:
            torch_io.from_npz(tmp_path / f"{name}.npz", alpha=0.1)
        one_line(info, frag)
    np.savez(tmp_path / "ok.npz", **w)
    for kwargs, frag in (({}, "does not store alpha"), ({"alpha": 0.1, "form": "rate"}, "'current' form")):
        with pytest.raises(ValueError) as info:
            torch_io.from_npz(tmp_path / "ok.npz", **kwargs)
        one_line(info, frag)


# ---------------------------------------------------------------------------------------------------- low rank
class LowRankRNN(nn.Module):
    """The low-rank literature's LowRankRNN (Dubreuil, Valente et al.), its forward as theirs (noise_std = 0)."""

    def __init__(self, input_size, hidden_size, output_size, alpha, rank=1, b=None):
        super().__init__()
        self.hidden_size, self.output_size, self.alpha = hidden_size, output_size, alpha
        self.non_linearity = torch.tanh
        self.output_non_linearity = torch.tanh
        self.wi = nn.Parameter(torch.randn(input_size, hidden_size))
        self.si = nn.Parameter(torch.rand(input_size) + 0.5)
        self.m = nn.Parameter(torch.randn(hidden_size, rank) * 2)
        self.n = nn.Parameter(torch.randn(hidden_size, rank) * 2)
        self.b = nn.Parameter(torch.zeros(hidden_size) if b is None else b)
        self.wo = nn.Parameter(torch.randn(hidden_size, output_size) * 4)
        self.so = nn.Parameter(torch.rand(output_size) + 0.5)
        self.h0 = nn.Parameter(torch.randn(hidden_size) * 0.5)

    def forward(self, input):
        batch_size, seq_len = input.shape[0], input.shape[1]
        h = self.h0
        r = self.non_linearity(h)
        wi_full = (self.wi.t() * self.si).t()
        wo_full = self.wo * self.so
        output = torch.zeros(batch_size, seq_len, self.output_size, dtype=input.dtype)
        for i in range(seq_len):
            h = h + self.alpha * (
                -h + r.matmul(self.n).matmul(self.m.t()) / self.hidden_size + input[:, i, :].matmul(wi_full)
            )
            r = self.non_linearity(h + self.b)
            output[:, i, :] = self.output_non_linearity(h) @ wo_full / self.hidden_size
        return output


def test_lowrank_state_dict_module_and_file(tmp_path):
    torch.manual_seed(18)
    net = LowRankRNN(2, 40, 2, alpha=0.2, rank=2)
    model = torch_io.from_lowrank(net)
    assert model.dynamics == sj.rnn.Dynamics(0.2, "tanh", "current") and model.h0 is not None
    sd = net.state_dict()
    assert same(model, torch_io.from_lowrank(sd, alpha=0.2))
    assert same(model, RateRNN.from_torch(sd, alpha=0.2))
    m, n = (sd[k].double().numpy() for k in ("m", "n"))
    np.testing.assert_allclose(np.asarray(model.W_rec), m @ n.T / 40, rtol=1e-6, atol=1e-7)
    x = torch.randn(3, 50, 2, dtype=torch.float64)
    with torch.no_grad():
        y64 = _torch64(net)(x).numpy()
    assert close(outputs(model, x.numpy()), y64) and np.abs(np.diff(y64, axis=1)).max() > 0.05
    # their file, as they save it (with the rec_noise buffer some versions keep)
    torch.save({"model": {**sd, "rec_noise": torch.tensor(0.05)}, "epoch": 9}, tmp_path / "rank2.pt")
    out = tmp_path / "lr.eqx"
    assert main(["import", str(tmp_path / "rank2.pt"), "--out", str(out), "--alpha", "0.2"]) == 0
    loaded, meta = sj.load_model(out)
    assert same(loaded, model) and meta["source"]["layout"] == "lowrank"
    # FullRankRNN: wrec instead of m, n, and no / N in the readout
    full = {k: v for k, v in sd.items() if k not in ("m", "n")} | {"wrec": torch.randn(40, 40) / 40**0.5}
    fm = torch_io.from_lowrank(full, alpha=0.2)
    np.testing.assert_array_equal(np.asarray(fm.W_rec), full["wrec"].numpy())
    wo_full = (sd["wo"] * sd["so"]).double().numpy().T
    np.testing.assert_allclose(np.asarray(fm.W_out), wo_full, rtol=1e-6)


def _shifted_lowrank_rollout(sd, x, alpha):
    """The variant whose first step and readout read phi(x + b): x' = x + a(-x + W phi(x + b) + W_in u)."""
    g = {k: v.double().numpy() for k, v in sd.items()}
    N = g["m"].shape[0]
    W, W_in, W_out = g["m"] @ g["n"].T / N, (g["si"][:, None] * g["wi"]), g["wo"] * g["so"] / N
    h = np.tile(g["h0"], (x.shape[0], 1))
    ys = []
    for t in range(x.shape[1]):
        h = h + alpha * (-h + np.tanh(h + g["b"]) @ W.T + x[:, t] @ W_in)
        ys.append(np.tanh(h + g["b"]) @ W_out)
    return np.stack(ys, axis=1)


def test_lowrank_bias_refused_or_shifted():
    torch.manual_seed(19)
    net = LowRankRNN(2, 30, 1, alpha=0.25, rank=1, b=torch.randn(30) * 0.5)
    with pytest.raises(ValueError) as info:
        torch_io.from_lowrank(net)
    one_line(info, "nonzero b", "pass bias='shift'")
    model = torch_io.from_lowrank(net, bias="shift")
    np.testing.assert_allclose(
        np.asarray(model.h0), (net.h0 + net.b).detach().double().numpy(), rtol=1e-6, atol=1e-7
    )  # h0~ = h0 + b
    x = np.random.default_rng(19).normal(size=(3, 40, 2))
    ref = _shifted_lowrank_rollout(net.state_dict(), x, 0.25)
    assert close(outputs(model, x), ref)
    sd = net.state_dict()
    for call, frag in (
        (lambda: torch_io.from_lowrank(sd), "does not store alpha"),
        (lambda: torch_io.from_lowrank({**sd, "wrec": torch.zeros(30, 30)}, alpha=0.2), "both m, n and wrec"),
        (lambda: torch_io.from_lowrank({**sd, "extra": torch.zeros(3)}, alpha=0.2), "holds keys ['extra']"),
        (lambda: torch_io.from_lowrank({**sd, "n": torch.zeros(29, 1)}, alpha=0.2), "m and n must both have"),
        (lambda: torch_io.from_lowrank(net, alpha=0.5), "alpha=0.5 was given but the LowRankRNN module stores"),
    ):
        with pytest.raises(ValueError) as info:
            call()
        one_line(info, frag)


# ------------------------------------------------------------------------------------------------------ export
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("nonlinearity", tuple(NONLINEARITIES))
def test_to_torch_every_form_matches_live_torch(form, nonlinearity):
    f, g = FORMS.index(form), tuple(NONLINEARITIES).index(nonlinearity)
    key, alpha = jax.random.key(3 * f + g), (1.0, 0.5, 0.2)[(f + g) % 3]  # a Latin square: each form and each
    # nonlinearity meets each alpha
    model = RateRNN(3, 12, 2, alpha=alpha, nonlinearity=nonlinearity, form=form, learn_h0=True, key=key, gain=1.5)
    model = RateRNN.from_arrays(
        W_in=model.W_in,
        W_rec=model.W_rec,
        b=np.linspace(-0.5, 0.5, 12),
        W_out=model.W_out,
        b_out=[0.1, -0.2],
        alpha=alpha,
        nonlinearity=nonlinearity,
        form=form,
        h0=np.linspace(-1, 1, 12),
    )
    net = model.to_torch()
    assert isinstance(net, nn.Module) and not isinstance(net, tuple)
    assert same(RateRNN.from_torch(net), model) and same(RateRNN.from_torch(net.state_dict()), model)
    x = np.random.default_rng(7).normal(size=(3, 25, 3))
    with torch.no_grad():
        y64, _ = _torch64(net)(torch.from_numpy(x))
        y32, _ = model.to_torch(batch_first=False)(torch.from_numpy(x.transpose(1, 0, 2)).float())
    y = outputs(model, x)
    assert close(y, y64.numpy()) and close(y, y32.numpy().transpose(1, 0, 2))
    # a TanhRNN keeps its (nn.RNN, nn.Linear) export
    rnn, lin = TanhRNN(3, 4, 2, key=key).to_torch()
    assert isinstance(rnn, nn.RNN) and isinstance(lin, nn.Linear)


# ----------------------------------------------------------------------------------------- files and the CLI
@pytest.mark.parametrize("form", FORMS)
def test_rate_rnn_checkpoint_round_trip(tmp_path, form):
    model = RateRNN(
        2, 6, 3, alpha=0.3, nonlinearity="softplus", form=form, learn_h0=form != "rate", key=jax.random.key(1)
    )
    path = sj.save_model(tmp_path / "m.eqx", model, {"task": {"name": "x", "params": {}}})
    loaded, meta = sj.load_model(path)
    assert same(loaded, model) and meta["format"] == checkpoint.FORMAT_RATE
    assert meta["dynamics"] == {"alpha": 0.3, "nonlinearity": "softplus", "form": form, "h0": form != "rate"}
    again = sj.save_model(tmp_path / "again.eqx", loaded, meta)
    assert again.read_bytes() == path.read_bytes()
    side = json.loads(path.with_suffix(".json").read_text())
    for edit, frag in (
        ({"dynamics": {**side["dynamics"], "form": "leaky"}}, "dynamics must be"),
        ({"dynamics": {**side["dynamics"], "alpha": 2}}, "dynamics.alpha must be in (0, 1]"),
        ({"dynamics": {**side["dynamics"], "h0": form == "rate"}}, "does not hold a RateRNN"),
        ({"dynamics": None}, "has no 'dynamics' record"),
    ):
        bad = tmp_path / "bad.eqx"
        bad.write_bytes(path.read_bytes())
        bad.with_suffix(".json").write_text(json.dumps({**side, **edit}))
        with pytest.raises(ValueError) as info:
            sj.load_model(bad)
        one_line(info, frag)


def test_tanh_files_and_the_zoo_still_load_as_tanh(tmp_path):
    model = TanhRNN(2, 5, 1, key=jax.random.key(0))
    path = sj.save_model(tmp_path / "t.eqx", model)
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["format"] == "schurjax.TanhRNN/1" and "dynamics" not in side
    assert type(sj.load_model(path)[0]) is TanhRNN
    name = sj.zoo.entries()[0]
    zoo_model = sj.zoo.load(name.task, seed=int(name.seed))
    assert type(zoo_model) is TanhRNN


def test_never_overwrites_a_users_file(tmp_path):
    torch.manual_seed(20)
    net = RNNNet(3, 5, 2, dt=10)
    torch.save(net.state_dict(), tmp_path / "c.pt")
    out = tmp_path / "model.eqx"
    users = '{"my": "training notes"}\n'
    out.with_suffix(".json").write_text(users)
    argv = ["import", str(tmp_path / "c.pt"), "--out", str(out), "--alpha", "0.1"]
    assert main(argv) == 2
    assert out.with_suffix(".json").read_text() == users and not out.exists()
    with pytest.raises(ValueError) as info:
        sj.save_model(out, TanhRNN(1, 2, 1, key=jax.random.key(0)))
    one_line(info, "was not written by schurjax; refusing to replace it")
    assert out.with_suffix(".json").read_text() == users
    assert main([*argv, "--force"]) == 0
    assert same(sj.load_model(out)[0], torch_io.from_ctrnn(net, alpha=0.1))
    assert main(argv) == 2  # an existing target, ours or not, is refused by import unless --force
    # save_model replaces its own files (the zoo builder and the study do)
    sj.save_model(out, TanhRNN(1, 2, 1, key=jax.random.key(0)))


def test_zero_sizes_and_failed_writes_leave_nothing(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    sd = {"rnn.weight_ih_l0": torch.zeros(0, 3), "rnn.weight_hh_l0": torch.zeros(0, 0), "fc.weight": torch.zeros(2, 0)}
    torch.save(sd, tmp_path / "zero_hidden.pt")
    torch.save(
        {"rnn.weight_ih_l0": torch.zeros(4, 0), "rnn.weight_hh_l0": torch.eye(4), "fc.weight": torch.zeros(2, 4)},
        tmp_path / "zero_in.pt",
    )
    for name in ("zero_hidden.pt", "zero_in.pt"):
        capsys.readouterr()
        assert main(["import", str(tmp_path / name), "--out", str(folder / "m.eqx")]) == 2
        err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
        assert len(err) == 1 and "needs at least one of each" in err[0], err
        assert no_files_left(folder) == []
    # a failure after the weights would have been written: the sidecar's move fails
    torch.save(RNNNet(3, 4, 2, dt=20).state_dict(), tmp_path / "ok.pt")
    real = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        if str(dst).endswith(".json"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", failing_replace)
    capsys.readouterr()
    assert main(["import", str(tmp_path / "ok.pt"), "--out", str(folder / "m.eqx"), "--alpha", "0.2"]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(err) == 1 and "No space left on device" in err[0], err
    assert [os.path.basename(c) for c in calls] == ["m.eqx", "m.json"]  # the weights were in place, then removed
    assert no_files_left(folder) == []
    monkeypatch.setattr(checkpoint.os, "replace", real)
    assert main(["import", str(tmp_path / "ok.pt"), "--out", str(folder / "m.eqx"), "--alpha", "0.2"]) == 0
    assert no_files_left(folder) == ["m.eqx", "m.json"]


def test_cli_layout_and_form_mismatches(tmp_path, capsys):
    torch.manual_seed(21)
    torch.save(RNNNet(3, 4, 2).state_dict(), tmp_path / "c.pt")
    for extra, frag in (
        (["--form", "rate", "--alpha", "0.2"], "layout 'neurogym' is the 'post' form, got --form rate"),
        (["--layout", "lowrank", "--alpha", "0.2"], "that a low-rank RNN does not have"),
        ([], "does not store alpha"),
        (["--layout", "torch-rnn"], "holds a NeuroGym CTRNN, not a torch.nn.RNN; import it with --layout neurogym"),
        (["--layout", "psychrnn", "--alpha", "0.2"], "is not an .npz file"),
    ):
        capsys.readouterr()
        assert main(["import", str(tmp_path / "c.pt"), "--out", str(tmp_path / "x.eqx"), *extra]) == 2
        err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
        assert len(err) == 1 and frag in err[0], err
        assert not (tmp_path / "x.eqx").exists()
