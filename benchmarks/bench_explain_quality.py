"""Explanation quality per method: deletion-game area, deletion / insertion AUC, sanity check.

Trains the default small CNN with the library's loop on a built-in dataset (or, with
``--data faces``, takes the pretrained MTCNN RNet face classifier on the LFW face crops of
the face / non-face set, explaining the "face" logit), then runs
:func:`trusttango.explain.compare_methods` on test images (one call) and appends the table.
Fong & Vedaldi 2017 claim meaningful perturbation gives the smallest deletion-game area; the
notes row says whether it does here.

    python -m benchmarks.bench_explain_quality --data fashion-mnist --n 64 --epochs 4
    python -m benchmarks.bench_explain_quality --data faces --n 64
"""

from __future__ import annotations

from functools import partial

import torch

from benchmarks.harness import make_parser, parse, write_table
from trusttango.data import load_builtin
from trusttango.data.faces import face_dataset
from trusttango.errors import InputError
from trusttango.explain import METHODS, MeaningfulPerturbation, compare_methods
from trusttango.models.faces import face_classifier
from trusttango.train import TrainConfig
from trusttango.workflow import train_model


def model_and_images(data: str, n: int, epochs: int) -> tuple[torch.nn.Module, torch.Tensor, str]:
    """The model, ``n`` test images and a description for the notes."""
    if data == "faces":
        faces, model = face_dataset(), face_classifier()
        with torch.no_grad():
            acc = float((model(faces.x).argmax(1) == faces.y).float().mean())
        x = faces.x[faces.y == 1][:n]
        return model, x, f"pretrained MTCNN RNet (face / non-face accuracy {acc:.3f} on lfw_subset), {len(x)} faces"
    splits = load_builtin(data, seed=0)
    saved = train_model(splits, TrainConfig(epochs=epochs, progress=False))
    acc = saved.meta["metrics"]["test_accuracy"]
    described = f"small CNN ({epochs} epochs, test accuracy {acc:.3f}), {n} test images"
    return saved.model.eval(), splits.test.x[:n], described


def parser():
    """The script's command line."""
    found = make_parser(__doc__)
    found.add_argument("--data", default="fashion-mnist")
    found.add_argument("--n", type=int, default=64)
    found.add_argument("--epochs", type=int, default=4)
    found.add_argument("--mp-steps", type=int, default=300)
    found.add_argument("--notes", default="")
    return found


def main() -> None:
    args = parse(parser())
    model, x, described = model_and_images(args.data, args.n, args.epochs)
    methods = {**METHODS, "meaningful": partial(MeaningfulPerturbation, steps=args.mp_steps)}
    refused = {}
    for name in list(methods):  # e.g. ReLU backward rules on a PReLU network: refused with a reason
        try:
            methods[name](model).attribute(x[:1])
        except InputError as err:
            refused[name] = str(err)
            del methods[name]
    rows = compare_methods(model, x, methods=methods)
    keys = list(rows[0])
    for r in rows:
        print("  ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else r[k] for k in keys))
    best = min(rows, key=lambda r: r["deletion_game_area"])["method"]
    notes = (
        f"{args.data}, {described}, "
        f"meaningful perturbation {args.mp_steps} steps. Smallest deletion-game area: {best} "
        f"(paper's claim: meaningful perturbation {'holds' if best == 'meaningful' else 'does not hold here'}). "
        + "".join(f"Not applicable: {k} ({v}). " for k, v in refused.items())
        + args.notes
    )
    write_table(f"Explanations: quality per method on {args.data}", keys, [list(r.values()) for r in rows], notes)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
