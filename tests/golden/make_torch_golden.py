"""Make the torch golden files checked by tests/test_rnn.py (run: python tests/golden/make_torch_golden.py).

Runs a real one-layer ``torch.nn.RNN(nonlinearity="tanh")`` plus a ``torch.nn.Linear`` readout, and stores the
state dicts, the inputs and torch's hidden states and outputs (float32) in ``torch_rnn_n16.npz``. Weights are
drawn with a larger recurrent gain than torch's default so that the dynamics are not trivially contracting.
"""

from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).with_name("torch_rnn_n16.npz")


def main() -> None:
    torch.manual_seed(1234)
    n_in, n, n_out, B, T = 3, 16, 2, 4, 25
    rnn = torch.nn.RNN(n_in, n, num_layers=1, nonlinearity="tanh", batch_first=True)
    lin = torch.nn.Linear(n, n_out)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(torch.randn(n, n) * (1.3 / n**0.5))
        rnn.weight_ih_l0.copy_(torch.randn(n, n_in))
        rnn.bias_ih_l0.copy_(0.3 * torch.randn(n))
        rnn.bias_hh_l0.copy_(0.3 * torch.randn(n))
    x = torch.randn(B, T, n_in)
    with torch.no_grad():
        h, _ = rnn(x)
        y = lin(h)
    arrays = {f"rnn.{k}": v.numpy() for k, v in rnn.state_dict().items()}
    arrays.update({f"readout.{k}": v.numpy() for k, v in lin.state_dict().items()})
    arrays.update(inputs=x.numpy(), hidden=h.numpy(), outputs=y.numpy(), torch_version=np.array(torch.__version__))
    np.savez(OUT, **arrays)
    print(f"wrote {OUT} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
