#!/usr/bin/env python3
"""Segments a 2-D image with a TorchScript U-Net from Python.

    segment_image.py model.pt input.png labels.png [probabilities.nrrd]

Writes the label map (class k as k * 255 / (classes - 1)) and, if asked, the per-class probabilities.
"""
import sys

import itk


def main(model_file, input_file, labels_file, probabilities_file=None):
    image = itk.imread(input_file, itk.UC)
    segmenter = itk.UNetSegmentationImageFilter.New(image, ModelFileName=model_file)
    segmenter.AddObserver(itk.ProgressEvent(),
                          lambda: print(f"\rsegmenting: {100 * segmenter.GetProgress():3.0f} %", end="", flush=True))
    segmenter.Update()
    print()
    model = segmenter.GetModel()
    classes = model.GetNumberOfClasses()
    border = [model.GetBorder(axis) for axis in range(model.GetNetworkDimension())]
    print(f"{model.GetFileName()}: {classes} classes, border {border} (x, y)")

    # k * 255 / (classes - 1), rounded: 0, 128, 255 for three classes, as the docstring says (not 0, 127, 254).
    classes_out = itk.array_from_image(segmenter.GetOutput()).astype("uint16")
    labels = (classes_out * 255 + (classes - 1) // 2) // (classes - 1)
    output = itk.image_from_array(labels.astype("uint8"))
    output.CopyInformation(segmenter.GetOutput())
    itk.imwrite(output, labels_file)
    if probabilities_file:
        itk.imwrite(segmenter.GetProbabilityOutput(), probabilities_file)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
