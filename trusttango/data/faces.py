"""The face / non-face image set, offline: ``skimage.data.lfw_subset()`` (bundled with
scikit-image), 100 LFW face crops and 100 non-face patches, 25 x 25 grey."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from trusttango.data.base import LabelledDataset

FACE_CLASSES = ["non-face", "face"]


def face_dataset(size: int = 24) -> LabelledDataset:
    """``lfw_subset`` as RGB ``(200, 3, size, size)`` in [0, 1]; label 1 = face (the first 100), 0 = non-face."""
    from skimage.data import lfw_subset

    grey = torch.from_numpy(np.asarray(lfw_subset(), dtype=np.float32))[:, None]  # (200, 1, 25, 25) in [0, 1]
    x = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1).repeat(1, 3, 1, 1)
    y = torch.cat([torch.ones(100), torch.zeros(len(x) - 100)]).long()
    return LabelledDataset(x, y, FACE_CLASSES, "image", "lfw_subset")
