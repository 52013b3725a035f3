#!/usr/bin/env bash
# Builds the API reference from the public headers with Doxygen (Debian's doxygen), as ITK documents its classes,
# into build/docs/html, and fails on any Doxygen warning: an undocumented public member, a broken \sa or \ref, a
# parameter documented under the wrong name.
#
#   scripts/docs.sh            (UNETSEG_BUILD_DIR: where build/docs goes)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${UNETSEG_BUILD_DIR:-$repo/build}
if ! command -v doxygen > /dev/null; then
  if [ "$(id -u)" = 0 ]; then bash "$repo/scripts/install-deps.sh" >&2; else sudo bash "$repo/scripts/install-deps.sh" >&2; fi
fi
out=$build_dir/docs
mkdir -p "$out"
warnings=$out/doxygen-warnings.txt
# The main page, and the group that the classes' \ingroup UNetSegmentation names (ITK makes its modules' groups from
# itk-module.cmake).
# The guides in README.md and docs/ stay Markdown pages of the repository: Doxygen 1.9.4 reads their in-page links
# (#heading) as \ref to labels it never makes, and they link one another, so any of them brings in all of them.
cat > "$out/mainpage.dox" << 'MAINPAGE'
/** \mainpage UNetSegmentation
 *
 * An ITK remote module that segments images of any size with a TorchScript U-Net run by LibTorch, tile by tile (the
 * overlap-tile strategy), streamed through ITK's requested regions; and the filters that make a U-Net's training
 * inputs from instance labels. All of its classes are in the module's group, \ref UNetSegmentation.
 *
 * Segmentation:
 * - itk::UNetSegmentationImageFilter: the label map and class probabilities of an image, tile by tile.
 * - itk::UNetModel: a TorchScript U-Net and the tile geometry probed from it.
 * - itk::UNetCellSeparationImageFilter: cell instances from the class probabilities.
 *
 * Training inputs:
 * - itk::UNetCellLabelImageFilter: instance labels from a binary cell mask.
 * - itk::UNetWeightMapImageFilter: the U-Net paper's pixel-wise loss weights.
 * - itk::UNetTrainingTargetImageFilter: a semantic target in which touching cells are split by background.
 *
 * The units the segmentation filter is composed of: itk::UNetNetworkGeometry, itk::UNetTilePlan, itk::UNetTileGrid,
 * itk::UNetBoundaryCondition, itk::UNetNormalization and, in namespace itk::unet_detail, its internals, documented
 * for maintainers.
 *
 * The guides are the repository's README.md and the Markdown pages in its docs/ folder; docs/design.md describes how
 * these classes fit together and how an image flows through them.
 */

/** \defgroup UNetSegmentation Module UNetSegmentation
 * \brief U-Net segmentation of images of any size in ITK pipelines, and the U-Net's training inputs.
 */
MAINPAGE
# The settings that differ from Doxygen's defaults. ITK's macros expand to the members they declare, as in ITK's own
# reference (SetX/GetX rather than itkSetMacro(X, ...)); ITK_TEMPLATE_EXPORT and the export macro expand to nothing.
# DISTRIBUTE_GROUP_DOC: one comment before a member group (/** @{ */ ... /** @} */) documents each of its members.
doxygen - > "$out/doxygen.log" << DOXYFILE
PROJECT_NAME           = UNetSegmentation
PROJECT_BRIEF          = "U-Net segmentation of images of any size in ITK pipelines"
OUTPUT_DIRECTORY       = $out
INPUT                  = $repo/include $out/mainpage.dox
FILE_PATTERNS          = *.h
RECURSIVE              = NO
EXTRACT_ALL            = NO
EXTRACT_PRIVATE        = NO
EXTRACT_STATIC         = YES
HIDE_UNDOC_CLASSES     = NO
DISTRIBUTE_GROUP_DOC   = YES
WARN_IF_UNDOCUMENTED   = YES
WARN_IF_DOC_ERROR      = YES
WARN_NO_PARAMDOC       = NO
WARN_LOGFILE           = $warnings
ENABLE_PREPROCESSING   = YES
MACRO_EXPANSION        = YES
EXPAND_ONLY_PREDEF     = YES
PREDEFINED             = ITK_TEMPLATE_EXPORT= UNetSegmentation_EXPORT= ITKv5_CONST=const \
                         "ITK_DISALLOW_COPY_AND_MOVE(x)=" \
                         "itkNewMacro(x)=static Pointer New();" \
                         "itkTypeMacro(x,y)=const char * GetNameOfClass() const override;" \
                         "itkSetMacro(name,type)=virtual void Set##name(type _arg);" \
                         "itkGetConstMacro(name,type)=virtual type Get##name() const;" \
                         "itkGetConstReferenceMacro(name,type)=virtual const type & Get##name() const;" \
                         "itkSetStringMacro(name)=virtual void Set##name(const char * _arg); void Set##name(const std::string & _arg);" \
                         "itkGetStringMacro(name)=virtual const char * Get##name() const;" \
                         "itkSetEnumMacro(name,type)=virtual void Set##name(const type _arg);" \
                         "itkGetEnumMacro(name,type)=virtual type Get##name() const;" \
                         "itkBooleanMacro(name)=virtual void name##On(); virtual void name##Off();" \
                         "itkGetModifiableObjectMacro(name,type)=virtual type * GetModifiable##name(); virtual const type * Get##name() const;"
GENERATE_LATEX         = NO
HAVE_DOT               = NO
QUIET                  = YES
DOXYFILE
if [ -s "$warnings" ]; then
  echo "Doxygen warnings ($(wc -l < "$warnings")), in $warnings:" >&2
  cat "$warnings" >&2
  exit 1
fi
echo "API reference: $out/html/index.html"
