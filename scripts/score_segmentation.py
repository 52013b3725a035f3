"""Scores a label map against a ground-truth mask: pixel accuracy, and Dice of class 1.

    score_segmentation.py LABELS TRUTH

LABELS holds class indices, as the UNetSegmentation command-line module writes them; TRUTH is class 1 where it is
at least 128 (the ISBI 2012 labels: cell interior white, membrane black).
Run with Debian's Python and ITK's wrapping on PYTHONPATH, as scripts/demo.sh does.
"""
import sys

import itk
import numpy as np


def main(labels_file, truth_file):
    labels = itk.array_from_image(itk.imread(labels_file))
    truth = itk.array_from_image(itk.imread(truth_file)) >= 128
    if labels.shape != truth.shape:
        sys.exit(f"{labels_file} is {labels.shape[::-1]} pixels, {truth_file} {truth.shape[::-1]}")
    predicted = labels == 1
    accuracy = np.mean(predicted == truth)
    dice = 2.0 * np.sum(predicted & truth) / (np.sum(predicted) + np.sum(truth))
    print(f"pixel accuracy {accuracy:.4f}, Dice (class 1) {dice:.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
