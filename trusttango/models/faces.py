"""A real pretrained face CNN, offline: the refinement network (RNet) of MTCNN (Zhang et al.
2016, "Joint face detection and alignment using multi-task cascaded convolutional networks"),
whose pretrained weights ship as a state_dict inside the ``facenet-pytorch`` wheel
(``data/rnet.pt``). The package is not imported: the network is defined here and the file is
read with ``weights_only=True``. Its images: :func:`trusttango.data.faces.face_dataset`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from trusttango.errors import require


def rnet_weights() -> Path:
    """``facenet_pytorch/data/rnet.pt`` located without importing the package."""
    spec = importlib.util.find_spec("facenet_pytorch")
    require(spec is not None, "facenet-pytorch: not installed (pip install --no-deps facenet-pytorch)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "rnet.pt"
    require(path.exists(), f"{path}: MTCNN RNet weights missing from the facenet-pytorch wheel")
    return path


class FaceRNet(nn.Module):
    """MTCNN RNet as a 2-class classifier: images ``(N, 3, 24, 24)`` in [0, 1] -> logits ``(non-face, face)``.

    Inputs are rescaled to the network's ``(255 x - 127.5) / 128``; the dense layer reads the
    conv features column-major (the Caffe original's layout); the box-regression head is dropped.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x * 255.0 - 127.5) * 0.0078125
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).flatten(1)))
        return self.dense5_1(x)


def face_classifier() -> FaceRNet:
    """The pretrained RNet (eval mode), weights read offline from the facenet-pytorch wheel."""
    model = FaceRNet()
    state = torch.load(rnet_weights(), map_location="cpu", weights_only=True)
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("dense5_2")})
    return model.eval()
