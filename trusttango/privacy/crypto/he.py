"""Private inference with CKKS homomorphic encryption (Cheon et al. 2017) through TenSEAL.

The client encrypts its image; the server evaluates a small network on the ciphertext
without the secret key; only the client can decrypt the logits. CKKS evaluates additions
and multiplications of real vectors (approximately, noise ~ 2^-scale_bits), so the network
is polynomial: one convolution (im2col packing: every kernel window in one ciphertext slot
block), x^2 activations (CryptoNets, Gilad-Bachrach et al. 2016) and linear layers, each a
plaintext-ciphertext matrix product (TenSEAL's diagonal method, Halevi & Shoup 2014).

Two details decide whether the decrypted logits equal the plaintext ones:

* The diagonal method reads slots past a vector's end, where it expects the vector to repeat.
  A fresh or packed ciphertext does, but adding a plaintext bias after ``fc1`` changes only its
  first slots, so ``fc2`` would read unbiased copies. :func:`encrypted_forward` therefore lays
  the hidden layer out with ``classes - 1`` leading slots of rotated copies (columns of ``fc1``
  repeated) and gives ``fc2`` zero rows there; every slot ``fc2`` reads then lies inside the
  biased vector and its weighted sum is exact.
* Each rescale divides by a prime only close to ``2^scale_bits`` (primes must be 1 mod 2N),
  while TenSEAL keeps the nominal scale; the relative drift per layer is about ``2N / 2^bits``.
  The default N = 16384 with 40-bit primes makes it 2^15 / 2^40 ~ 3e-8 per layer; N = 8192
  with the 26-bit primes that fit six rescales makes it 2^14 / 2^26 ~ 2e-4 per layer, enough to
  move the logits visibly (``tests/test_he.py`` checks both).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trusttango.data.base import LabelledDataset
from trusttango.errors import require


class Square(nn.Module):
    """x -> x^2, the polynomial activation of CryptoNets."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class HENet(nn.Module):
    """conv(k x k, stride s, ``channels``) -> x^2 -> linear(``hidden``) -> x^2 -> linear(classes),
    for one-channel square images in [0, 1] (no padding, so im2col packing applies)."""

    def __init__(
        self, side: int, num_classes: int, channels: int = 4, kernel: int = 3, stride: int = 1, hidden: int = 32
    ):
        super().__init__()
        require(kernel <= side, f"kernel: {kernel} larger than the image side {side}")
        self.side, self.kernel, self.stride = side, kernel, stride
        self.windows = ((side - kernel) // stride + 1) ** 2
        self.conv = nn.Conv2d(1, channels, kernel, stride)
        self.fc1 = nn.Linear(channels * self.windows, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.act = Square()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv(x)).flatten(1)  # channel-major, row-major windows: the im2col order
        return self.fc2(self.act(self.fc1(x)))


def make_context(poly_modulus_degree: int = 16384, scale_bits: int = 40, outer_bits: int = 60):
    """A CKKS context (secret key inside: the client's) with Galois keys for rotations.

    Modulus chain ``[outer, scale x 6, outer]``: 360 bits by default, within the 438 that N = 16384
    allows at 128-bit security; ``outer - scale`` bits bound the integer part of the logits.
    """
    import tenseal as ts

    middle = [scale_bits] * 6  # one rescale per multiplication: conv, square, fc1, square, fc2 (+1 spare)
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree, coeff_mod_bit_sizes=[outer_bits, *middle, outer_bits])
    ctx.global_scale = 2**scale_bits
    ctx.generate_galois_keys()
    return ctx


def encrypt_image(context, image: torch.Tensor, model: HENet):
    """Client side: im2col-encode and encrypt one ``(1, H, W)`` image; returns (ciphertext, windows)."""
    import tenseal as ts

    require(tuple(image.shape) == (1, model.side, model.side), f"image: expected (1, {model.side}, {model.side})")
    return ts.im2col_encoding(context, image[0].tolist(), model.kernel, model.kernel, model.stride)


def encrypted_forward(model: HENet, enc_x, windows: int):
    """Server side: evaluate ``model`` on the encrypted image; returns encrypted logits."""
    import tenseal as ts

    w = model.conv.weight.detach()
    b = model.conv.bias.detach()
    channels = [enc_x.conv2d_im2col(w[c, 0].tolist(), windows) + float(b[c]) for c in range(w.shape[0])]
    enc = ts.CKKSVector.pack_vectors(channels)
    enc.square_()
    fc1_weight, fc1_bias, fc2_weight = _shifted_hidden_layout(model)
    enc = enc.mm(fc1_weight) + fc1_bias
    enc.square_()
    return enc.mm(fc2_weight) + model.fc2.bias.detach().tolist()


def _shifted_hidden_layout(model: HENet) -> tuple[list, list, list]:
    """``fc1`` (weight as in x W, bias) and ``fc2`` (weight) for a hidden vector of ``hidden + s`` slots,
    ``s = classes - 1``: slot ``k`` holds unit ``(k - s) mod hidden``, and ``fc2`` reads units from
    slots ``s..s + hidden - 1`` only, so the diagonal method never reads past the vector (module doc)."""
    hidden, classes = model.fc1.out_features, model.fc2.out_features
    shift = classes - 1
    unit = (torch.arange(hidden + shift) - shift) % hidden
    fc1_weight = model.fc1.weight.detach().T[:, unit]
    fc2_weight = torch.cat([torch.zeros(shift, classes), model.fc2.weight.detach().T])
    return fc1_weight.tolist(), model.fc1.bias.detach()[unit].tolist(), fc2_weight.tolist()


@dataclass
class HEReport:
    """Encrypted vs plaintext inference on a test sample."""

    n: int
    plain_accuracy: float
    encrypted_accuracy: float
    agreement: float  # fraction of identical predicted classes
    max_logit_error: float
    latency_s: float  # mean server-side evaluation time per image
    encrypt_s: float  # mean client-side encryption time per image
    input_bytes: int  # serialised encrypted image
    output_bytes: int  # serialised encrypted logits


def evaluate_encrypted(model: HENet, data: LabelledDataset, n: int = 20, context=None) -> HEReport:
    """Run private inference on the first ``n`` examples of ``data`` and compare with plaintext."""
    require(data.input_shape == (1, model.side, model.side), f"data: expected images (1, {model.side}, {model.side})")
    require(n >= 1, f"n: must be >= 1, got {n}")
    ctx = context or make_context()
    model = model.cpu().eval()
    x, y = data.x[:n], data.y[:n]
    with torch.no_grad():
        plain = model(x).numpy()
    logits, t_enc, t_eval, in_bytes, out_bytes = [], 0.0, 0.0, 0, 0
    for image in x:
        t0 = time.perf_counter()
        enc_x, windows = encrypt_image(ctx, image, model)
        t1 = time.perf_counter()
        enc_out = encrypted_forward(model, enc_x, windows)
        t2 = time.perf_counter()
        logits.append(enc_out.decrypt())
        t_enc, t_eval = t_enc + t1 - t0, t_eval + t2 - t1
        in_bytes, out_bytes = len(enc_x.serialize()), len(enc_out.serialize())
    enc = np.array(logits)
    m = len(y)
    truth = y.numpy()
    return HEReport(
        n=m,
        plain_accuracy=float((plain.argmax(1) == truth).mean()),
        encrypted_accuracy=float((enc.argmax(1) == truth).mean()),
        agreement=float((plain.argmax(1) == enc.argmax(1)).mean()),
        max_logit_error=float(np.abs(plain - enc).max()),
        latency_s=t_eval / m,
        encrypt_s=t_enc / m,
        input_bytes=in_bytes,
        output_bytes=out_bytes,
    )
