"""The offline face / non-face set and the pretrained MTCNN RNet face classifier."""

from __future__ import annotations

import socket
import sys

import pytest
import torch

from trusttango.data.faces import face_dataset
from trusttango.explain import GradCAM, to_heatmap
from trusttango.explain.metrics import deletion_insertion
from trusttango.models.faces import face_classifier


@pytest.fixture(scope="module")
def faces():
    return face_dataset()


def test_pretrained_rnet_separates_faces_offline(faces, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access while loading the face model")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    sys.modules.pop("facenet_pytorch", None)
    model = face_classifier()
    assert "facenet_pytorch" not in sys.modules  # weights read from the wheel's file, package not imported
    assert faces.x.shape == (200, 3, 24, 24) and faces.y.tolist() == [1] * 100 + [0] * 100
    with torch.no_grad():
        logits = model(faces.x)
    assert float((logits.argmax(1) == faces.y).float().mean()) > 0.95
    # cross-check against facenet-pytorch's own RNet on its input scaling
    from facenet_pytorch.models.mtcnn import RNet

    with torch.no_grad():
        _, prob = RNet(pretrained=True).eval()((faces.x * 255 - 127.5) * 0.0078125)
    torch.testing.assert_close(logits.softmax(1), prob, atol=1e-5, rtol=1e-4)


def test_face_explanations_beat_random_order(faces):
    model = face_classifier()
    x = faces.x[:32]  # faces
    heat = to_heatmap(GradCAM(model).attribute(x, 1))
    _, auc = deletion_insertion(model, x, heat, 1)
    _, auc_random = deletion_insertion(model, x, torch.rand(heat.shape, generator=torch.Generator().manual_seed(0)), 1)
    assert float(auc.mean()) < float(auc_random.mean())
