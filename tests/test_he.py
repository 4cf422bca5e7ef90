"""CKKS private inference (TenSEAL): encrypted predictions match plaintext on real digits."""

from __future__ import annotations

import pytest
import torch

from trusttango.errors import InputError
from trusttango.privacy.crypto.he import HENet, encrypt_image, encrypted_forward, evaluate_encrypted, make_context
from trusttango.train import TrainConfig, accuracy, fit


@pytest.fixture(scope="module")
def he_model(digits) -> HENet:
    """conv + x^2 + linear + x^2 + linear, trained on digits with the one loop."""
    torch.manual_seed(0)
    model = HENet(8, 10, channels=2, hidden=16)
    fit(model, digits.train, None, TrainConfig(epochs=15, batch_size=64, lr=3e-3, progress=False))
    return model.eval()


def test_encrypted_inference_matches_plaintext(he_model, digits):
    assert accuracy(he_model, digits.test) > 0.9
    report = evaluate_encrypted(he_model, digits.test, n=4)
    assert report.agreement == 1.0 and report.encrypted_accuracy == report.plain_accuracy
    with torch.no_grad():
        scale = float(he_model(digits.test.x[:4]).abs().max())
    assert report.max_logit_error < 1e-3 * scale  # measured 4e-5: CKKS noise only (module doc of he.py)
    assert report.input_bytes > 10_000 and report.latency_s > 0


def test_hidden_layout_and_scale_drift_matter(he_model, digits):
    """The two fixes of he.py's module doc, undone one at a time, each bring the error back."""
    from trusttango.privacy.crypto import he

    with torch.no_grad():
        scale = float(he_model(digits.test.x[:2]).abs().max())
    drifting = evaluate_encrypted(he_model, digits.test, n=2, context=make_context(8192, 26, 31))
    assert drifting.max_logit_error > 0.005 * scale  # 26-bit primes: ~4 % measured

    def unshifted(m: HENet) -> tuple[list, list, list]:  # hidden vector of `hidden` slots, plain bias added
        return m.fc1.weight.detach().T.tolist(), m.fc1.bias.detach().tolist(), m.fc2.weight.detach().T.tolist()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(he, "_shifted_hidden_layout", unshifted)
        naive = evaluate_encrypted(he_model, digits.test, n=2)
    assert naive.max_logit_error > 0.005 * scale  # fc2 read unbiased copies: ~5 % measured


def test_server_cannot_read_the_ciphertext(he_model, digits):
    """Without the secret key the server sees only a ciphertext; the client's key decrypts it."""
    import tenseal as ts

    ctx = make_context()
    enc_x, windows = encrypt_image(ctx, digits.test.x[0], he_model)
    public = ctx.copy()
    public.make_context_public()
    server_view = ts.ckks_vector_from(public, enc_x.serialize())
    out = encrypted_forward(he_model, server_view, windows)
    with pytest.raises(ValueError):
        out.decrypt()
    result = ts.ckks_vector_from(ctx, out.serialize()).decrypt()
    assert int(torch.tensor(result).argmax()) == int(he_model(digits.test.x[:1]).argmax())


def test_he_bad_input(he_model, digits):
    with pytest.raises(InputError, match="expected"):
        evaluate_encrypted(HENet(6, 10), digits.test, n=1)
    with pytest.raises(InputError, match="n: must be"):
        evaluate_encrypted(he_model, digits.test, n=0)
