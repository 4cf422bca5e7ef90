"""Video in the unified model: frame selection, video / frame-folder loaders (PyAV), the
moving-fashion clips, the 3D-convolution and attention fusions, training and model files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from trusttango.data import (
    Splits,
    load_builtin,
    load_data,
    load_folder,
    load_video_folder,
    save_video,
    stratified_indices,
)
from trusttango.data.video import DIRECTIONS
from trusttango.errors import InputError
from trusttango.models import build_model, config_for, load_model, save_model
from trusttango.models.io import SavedModel
from trusttango.models.video import frame_plan, select_frames
from trusttango.train import TrainConfig, accuracy, fit
from trusttango.workflow import train_model


@pytest.fixture(scope="module")
def moving():
    """The direction-labelled built-in clips."""
    return load_builtin("moving-fashion", seed=0)


def test_frame_plan_follows_the_seed_rule():
    assert frame_plan(16) == (8, 2)  # 8 frames spread over the clip
    assert frame_plan(100) == (8, 4)  # long clip: stride 4
    assert frame_plan(6) == (4, 1)  # short clip: 4 frames
    assert frame_plan(3) == (3, 1)  # never more frames than the clip has
    assert frame_plan(16, frames=4) == (4, 4)
    clip = torch.arange(20.0).view(1, 1, 20, 1, 1)
    assert select_frames(clip, 4, 4, random_offset=False).flatten().tolist() == [3.0, 7.0, 11.0, 15.0]  # centred
    with pytest.raises(InputError, match="frames must be >= 0"):
        frame_plan(16, frames=-1)


def test_moving_fashion_is_deterministic_and_moves_in_its_direction(moving):
    s = moving
    assert s.train.modality == "video" and s.train.input_shape == (1, 16, 32, 32)
    assert s.class_names == list(DIRECTIONS) and (s.train.class_counts() == 210).all()
    assert torch.equal(load_builtin("moving-fashion", seed=0).test.x, s.test.x)
    # centre of mass of the first and last frame: moves 15 px along the labelled direction
    x = s.test.x[:, 0]
    grid = torch.arange(32.0)
    mass = x.sum((2, 3))
    com_y = (x.sum(3) * grid).sum(2) / mass
    com_x = (x.sum(2) * grid).sum(2) / mass
    dy, dx = com_y[:, -1] - com_y[:, 0], com_x[:, -1] - com_x[:, 0]
    expected = {0: (0, 15), 1: (0, -15), 2: (15, 0), 3: (-15, 0)}
    for label, (ey, ex) in expected.items():
        rows = s.test.y == label
        assert torch.allclose(dy[rows], torch.full_like(dy[rows], ey), atol=0.5)
        assert torch.allclose(dx[rows], torch.full_like(dx[rows], ex), atol=0.5)
    garment = load_builtin("moving-fashion-garment", seed=0)
    assert garment.train.num_classes == 10 and garment.train.input_shape == (1, 16, 32, 32)


@pytest.fixture
def clips(moving):
    """Three clips of each of two directions."""
    rows = [int(i) for label in (0, 3) for i in np.flatnonzero(moving.test.y.numpy() == label)[:3]]
    return moving.test.x[rows], ["right"] * 3 + ["up"] * 3


def test_video_folder_decodes_mp4_clips(tmp_path, clips):
    x, names = clips
    for i, (clip, name) in enumerate(zip(x, names, strict=True)):
        (tmp_path / name).mkdir(exist_ok=True)
        save_video(clip, tmp_path / name / f"{i}.mp4")
    ds = load_folder(tmp_path)
    assert ds.modality == "video" and ds.class_names == ["right", "up"]
    assert ds.input_shape == (1, 16, 32, 32)  # grey detected, median length and size
    assert (ds.x - x).abs().mean() < 0.02  # the lossy codec only
    longer = load_video_folder(tmp_path, length=20, size=(16, 16), channels=3)
    assert longer.input_shape == (3, 20, 16, 16)
    assert torch.equal(longer.x[:, :, 15], longer.x[:, :, 19])  # padded with the last frame
    assert load_data(str(tmp_path)).train.modality == "video"


def test_undecodable_video_is_named_or_skipped(tmp_path, clips):
    x, names = clips
    for i, (clip, name) in enumerate(zip(x, names, strict=True)):
        (tmp_path / name).mkdir(exist_ok=True)
        save_video(clip, tmp_path / name / f"{i}.mp4")
    (tmp_path / "up" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    with pytest.raises(InputError, match="broken.mp4: cannot decode video"):
        load_video_folder(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1 undecodable"):
        ds = load_video_folder(tmp_path, skip_corrupt=True)
    assert len(ds) == 6


def test_frame_folders_are_lossless(tmp_path, clips):
    x, names = clips
    for i, (clip, name) in enumerate(zip(x, names, strict=True)):
        folder = tmp_path / name / f"clip{i}"
        folder.mkdir(parents=True)
        for t, frame in enumerate(clip[0]):
            Image.fromarray((frame.numpy() * 255).round().astype(np.uint8)).save(folder / f"{t:03d}.png")
    ds = load_folder(tmp_path)
    assert ds.modality == "video" and ds.input_shape == (1, 16, 32, 32)
    assert (ds.x - x).abs().max() <= 1 / 255 + 1e-6
    (tmp_path / "up" / "clip5" / "999.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match="999.png: corrupt"):
        load_folder(tmp_path)


@pytest.mark.parametrize(
    ("name", "fusion", "chance"),
    [
        ("moving-fashion", "conv3d", 0.25),  # direction: needs space-time filters, one frame cannot tell
        ("moving-fashion-garment", "attention", 0.1),  # garment class: attention over frames suffices
    ],
)
def test_video_model_learns_and_round_trips(name, fusion, chance, tmp_path):
    s = load_builtin(name, seed=0)
    idx, _ = stratified_indices(s.train.y.numpy(), (0.4, 0.6), 0)
    train = s.train.subset(idx)
    options = dict(modality="video", fusion=fusion, input_size=16, depth=2, width=0.25)
    cfg = config_for(train.input_shape, s.train.num_classes, **options)
    model = build_model(cfg, seed=0)
    fit(model, train, None, TrainConfig(epochs=4, batch_size=24, lr=5e-3, progress=False))
    acc = accuracy(model, s.test)
    assert acc > 2.4 * chance, acc
    model.eval()
    loaded = load_model(save_model(SavedModel(model, cfg, s.class_names), tmp_path / "m"))
    assert (loaded.config.modality, loaded.config.fusion) == ("video", fusion)
    torch.testing.assert_close(loaded.model(s.test.x[:6]), model(s.test.x[:6]))


def test_train_model_picks_video_defaults(moving):
    small = moving.test.subset(range(0, 240, 10))
    saved = train_model(Splits(small, small, small), TrainConfig(epochs=1, progress=False), depth=2, input_size=16)
    assert (saved.config.modality, saved.config.fusion) == ("video", "conv3d")
    assert len(saved.config.mean) == 1  # per-channel statistics of the clips


def test_video_model_needs_a_time_fusion_and_clip_shape():
    cfg = config_for((3, 10, 32, 32), 5, modality="video", depth=2)
    assert cfg.fusion == "conv3d"
    model = build_model(cfg, seed=0)
    assert model.preprocess.frames == 8 and model.preprocess.stride == 1
    x = torch.rand(2, 3, 10, 32, 32, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(InputError, match="time fusion"):
        build_model(config_for((1, 16, 32, 32), 4, modality="video", fusion="none"))
    with pytest.raises(InputError, match="clips shaped"):
        build_model(config_for((1, 32, 32), 4, modality="video"))
