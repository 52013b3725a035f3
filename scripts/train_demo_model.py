"""Trains the bundled demo model, examples/models/unet_isbi2012.pt, on the ISBI 2012 slices beside the project.

A paper-style valid U-Net (depth 3, 16 base channels: 220 -> 132 px tiles) learns cell interior (class 1) against
membrane (class 0) on slices 0-19 with flips and right-angle rotations, class-balanced cross-entropy and Adam;
slices 20-23 are held out and their pixel accuracy is printed. Intensity normalisation, (value - 128) / 64, is part
of the saved network, so that it takes the 8-bit slices as they are.

Run with Debian's Python (it has torch): /usr/bin/python3 scripts/train_demo_model.py [minutes] [threads] [resume]
("resume" continues from the weights of the saved model).
Needs python3-pil to read the PNG slices. This is a development tool: the trained model is committed.
"""
import os
import sys
import time

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet_models import UNet  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DATA = os.path.join(ROOT, "..", "shared", "data", "isbi2012")
OUT = os.path.join(ROOT, "examples", "models", "unet_isbi2012.pt")
INPUT_EDGE, BORDER = 220, 44


class Normalized(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net((x - 128.0) / 64.0)


def load(index):
    image = np.asarray(Image.open(os.path.join(DATA, "image", f"{index}.png")).convert("L"), dtype=np.float32)
    label = np.asarray(Image.open(os.path.join(DATA, "label", f"{index}.png")).convert("L")) >= 128
    return image, label.astype(np.int64)


def mirror_pad(image, border):
    return np.pad(image, border, mode="symmetric")  # the filter's mirror convention (edge voxel repeated)


def main():
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 15.0
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train = [load(i) for i in range(20)]
    held_out = [load(i) for i in range(20, 24)]
    padded = [(mirror_pad(image, BORDER), label) for image, label in train]
    foreground = np.mean([label.mean() for _, label in train])
    class_weights = torch.tensor([0.5 / (1.0 - foreground), 0.5 / foreground], dtype=torch.float32)

    model = Normalized(UNet(dim=2, in_channels=1, classes=2, base=16, depth=3, valid=True))
    if len(sys.argv) > 3 and sys.argv[3] == "resume":
        model.load_state_dict(torch.jit.load(OUT).state_dict())
        torch.manual_seed(1)
        rng = np.random.default_rng(1)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights)
    out_edge = INPUT_EDGE - 2 * BORDER
    start, step = time.time(), 0
    while time.time() - start < minutes * 60:
        inputs, targets = [], []
        for _ in range(4):
            image, label = padded[rng.integers(len(padded))]
            y, x = rng.integers(0, 512 - out_edge + 1, size=2)
            tile = image[y:y + INPUT_EDGE, x:x + INPUT_EDGE]
            target = label[y:y + out_edge, x:x + out_edge]
            k = rng.integers(4)
            tile, target = np.rot90(tile, k), np.rot90(target, k)
            if rng.integers(2):
                tile, target = tile[:, ::-1], target[:, ::-1]
            inputs.append(tile.copy())
            targets.append(target.copy())
        inputs = torch.from_numpy(np.stack(inputs)[:, None])
        targets = torch.from_numpy(np.stack(targets))
        loss = loss_fn(model(inputs), targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        if step % 50 == 0:
            print(f"step {step}  loss {loss.item():.4f}  {time.time() - start:.0f} s", flush=True)

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for image, label in held_out:
            # The whole slice in one tile: the smallest valid output edge >= 512 is 516 (132 + 8k).
            edge = 516 + 2 * BORDER
            tile = np.pad(image, ((BORDER, edge - 512 - BORDER),) * 2, mode="symmetric")
            scores = model(torch.from_numpy(tile.copy())[None, None])[0, :, :512, :512]
            prediction = scores.argmax(0).numpy()
            correct += (prediction == label).sum()
            total += label.size
    print(f"held-out slices 20-23: pixel accuracy {correct / total:.4f} after {step} steps")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    torch.jit.save(torch.jit.script(model), OUT)
    print("saved", OUT)


if __name__ == "__main__":
    main()
