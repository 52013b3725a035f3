/*=========================================================================
 *
 *  Copyright NumFOCUS
 *
 *  Licensed under the Apache License, Version 2.0 (the "License");
 *  you may not use this file except in compliance with the License.
 *  You may obtain a copy of the License at
 *
 *         http://www.apache.org/licenses/LICENSE-2.0.txt
 *
 *  Unless required by applicable law or agreed to in writing, software
 *  distributed under the License is distributed on an "AS IS" BASIS,
 *  WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 *  See the License for the specific language governing permissions and
 *  limitations under the License.
 *
 *=========================================================================*/
#ifndef itkUNetModelCard_h
#define itkUNetModelCard_h

#include "UNetSegmentationExport.h"

#include "itkIntTypes.h"
#include "itkUNetNormalization.h"

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace itk
{

/** \class UNetModelCard
 * \brief What a network needs besides its weights, carried in its TorchScript file: how to normalise an image for
 * it, the voxel spacing it was trained at, its class names and colours, the flips it is invariant to, recommended
 * tiles, cell-separation thresholds, and its provenance.
 *
 * A versioned JSON record stored as the extra file `unet_model_card.json` of the TorchScript archive
 * (`torch.jit.save(module, file, _extra_files={"unet_model_card.json": text})`); its JSON Schema is
 * `wrapping/Python/itk_unetsegmentation/model_card.schema.json`, and `python3 -m itk_unetsegmentation.model_card`
 * shows or writes one in any TorchScript file. UNetModel reads it at load; a record that is malformed, has a field of
 * the wrong type or value, is of a newer schema version than this one, or disagrees with the network is an
 * ExceptionObject naming the field. Every field but the version is optional: an absent one leaves the filters' own
 * settings.
 *
 * \sa UNetModel, UNetSegmentationImageFilter, UNetNormalization
 * \ingroup UNetSegmentation
 */
struct UNetSegmentation_EXPORT UNetModelCard
{
  /** The schema version this release reads and writes. */
  static constexpr unsigned int CurrentSchemaVersion = 1;
  /** The name of the record in the TorchScript archive's extra files. */
  static constexpr const char * ArchiveFileName = "unet_model_card.json";

  /** A class: its name and, optionally, its display colour (R, G, B in 0-255). */
  struct ClassDescription
  {
    /** The class's name, as Slicer shows it. */
    std::string Name{};
    /** Its display colour, R, G, B in 0-255; none: the module's palette. */
    std::optional<std::array<unsigned int, 3>> Color{};
  };

  /** The record's schema version (1). */
  unsigned int SchemaVersion{ CurrentSchemaVersion };
  /** "fixed" and "clip" normalisation: fixed values, with the clip window for "clip". */
  std::optional<UNetNormalization> Normalization{};
  /** "standardize" normalisation: each channel of an image mapped to this mean and standard deviation. */
  std::optional<std::array<double, 2>> StandardizeTo{};
  /** Per axis (x first); empty when absent. Unit "mm", "um", "nm" or "pixel" (the images' own grid). */
  std::vector<double> Spacing{};
  /** The spacing's unit. */
  std::string SpacingUnit{};
  /** One per network output channel, in order; empty when absent. */
  std::vector<ClassDescription> Classes{};
  /** The axes (0: x) the network was trained to be invariant to flips along: the filter's TestTimeFlipAxes. */
  std::optional<std::vector<unsigned int>> FlipAxes{};
  /** A recommended tile size (output voxels per axis), informational; empty when absent. */
  std::vector<SizeValueType> TileSize{};
  /** A recommended TileOverlap. */
  std::optional<SizeValueType> TileOverlap{};
  /** UNetCellSeparationImageFilter's CellClass, SeedThreshold and CellThreshold, chosen on the training data. */
  /** @{ */
  std::optional<unsigned int> CellClass{};
  std::optional<double>       SeedThreshold{};
  std::optional<double>       CellThreshold{};
  /** @} */
  /** The provenance object, as JSON text (empty when absent). */
  std::string ProvenanceJSON{};

  /** Parses and checks a record's JSON text; throws an ExceptionObject naming the field that is wrong. */
  static UNetModelCard
  FromJSON(const std::string & text);

  /** The record as JSON text (the fields present, in the schema's order). */
  std::string
  ToJSON() const;

  /** Throws unless the record fits a `dimension`-D network of `channels` input channels and `classes` classes,
   * naming the field and the network's value. */
  void
  VerifyAgainst(unsigned int dimension, unsigned int channels, unsigned int classes) const;

  /** Whether the network works on the images' own grid (no spacing, or unit "pixel"). */
  bool
  HasPhysicalSpacing() const
  {
    return !Spacing.empty() && SpacingUnit != "pixel";
  }
};

} // end namespace itk

#endif // itkUNetModelCard_h
