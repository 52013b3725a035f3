#!/usr/bin/env python3
"""Makes the U-Net training inputs from a binary cell mask, from Python.

    compute_weight_maps.py mask.png weights.nrrd target.png

The mask (e.g. an ISBI 2012 ground truth, 255 = cell) becomes instance labels by connected components
(UNetCellLabelImageFilter); from them come the touching-cell weight map (w0 = 10, sigma = 5 pixels) and the training
target in which touching cells are split by a background border.
"""
import sys

import itk


def main(mask_file, weights_file, target_file):
    mask = itk.imread(mask_file, itk.UC)
    instances = itk.u_net_cell_label_image_filter(mask, foreground_threshold=128)  # labels 1..number of cells
    weights = itk.u_net_weight_map_image_filter(instances, w0=10.0, sigma=5.0)
    target = itk.u_net_training_target_image_filter(instances, foreground_value=255)
    itk.imwrite(weights, weights_file)
    itk.imwrite(target, target_file)
    w = itk.array_from_image(weights)
    count = int(itk.array_from_image(instances).max())
    print(f"{count} cells; weights from {w.min():.3f} to {w.max():.3f}; wrote {weights_file} and {target_file}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
