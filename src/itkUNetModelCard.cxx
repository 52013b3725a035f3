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
#include "itkUNetModelCard.h"
#include "itkUNetSpacingUnits.h"

#include "itkMacro.h"

#include <nlohmann/json.hpp>

#include <set>
#include <sstream>

namespace itk
{

namespace
{
using Json = nlohmann::json;

/** Throws the ExceptionObject for a wrong field. */
[[noreturn]] void
FieldError(const std::string & field, const std::string & what)
{
  itkGenericExceptionMacro("The model card's field \"" << field << "\" " << what << '.');
}

std::string
Shown(const Json & value)
{
  std::string text = value.dump();
  return text.size() > 60 ? text.substr(0, 57) + "..." : text;
}

/** Throws unless `object` holds only `allowed` keys; `field` names it ("" for the record). */
void
CheckKeys(const Json & object, const std::string & field, const std::set<std::string> & allowed)
{
  for (const auto & entry : object.items())
  {
    if (allowed.count(entry.key()) == 0)
    {
      FieldError(field.empty() ? entry.key() : field + "." + entry.key(),
                 "is not a field of the model card (schema version 1)");
    }
  }
}

/** The object at `key` of `object`, checked to hold only `allowed` keys; null when absent. */
const Json *
ObjectField(const Json & object, const std::string & key, const std::string & field,
            const std::set<std::string> & allowed)
{
  const auto found = object.find(key);
  if (found == object.end())
  {
    return nullptr;
  }
  if (!found->is_object())
  {
    FieldError(field, "must be an object; got " + Shown(*found));
  }
  if (!allowed.empty())
  {
    CheckKeys(*found, field, allowed);
  }
  return &*found;
}

double
Number(const Json & value, const std::string & field)
{
  if (!value.is_number())
  {
    FieldError(field, "must be a number; got " + Shown(value));
  }
  return value.get<double>();
}

double
PositiveNumber(const Json & value, const std::string & field)
{
  const double number = Number(value, field);
  if (!(number > 0.0))
  {
    FieldError(field, "must be positive; got " + Shown(value));
  }
  return number;
}

SizeValueType
Count(const Json & value, const std::string & field, SizeValueType minimum)
{
  if (!value.is_number_integer() || value.get<long long>() < static_cast<long long>(minimum))
  {
    FieldError(field, "must be an integer of at least " + std::to_string(minimum) + "; got " + Shown(value));
  }
  return value.get<SizeValueType>();
}

const Json &
Array(const Json & value, const std::string & field, size_t minimum, size_t maximum)
{
  if (!value.is_array() || value.size() < minimum || value.size() > maximum)
  {
    FieldError(field,
               "must be an array of " + std::to_string(minimum) +
                 (maximum == minimum ? std::string() : " to " + std::to_string(maximum)) + " values; got " +
                 Shown(value));
  }
  return value;
}

const Json &
Required(const Json & object, const std::string & key, const std::string & field)
{
  const auto found = object.find(key);
  if (found == object.end())
  {
    FieldError(field + "." + key, "is missing");
  }
  return *found;
}

std::vector<double>
Numbers(const Json & value, const std::string & field, bool positive, size_t minimum = 1, size_t maximum = 16)
{
  std::vector<double> numbers;
  for (const Json & item : Array(value, field, minimum, maximum))
  {
    const std::string itemField = field + "[" + std::to_string(numbers.size()) + "]";
    numbers.push_back(positive ? PositiveNumber(item, itemField) : Number(item, itemField));
  }
  return numbers;
}

void
ReadNormalization(const Json & record, UNetModelCard & card)
{
  const Json * normalization =
    ObjectField(record, "normalization", "normalization", { "kind", "mean", "standard_deviation", "window" });
  if (normalization == nullptr)
  {
    return;
  }
  const Json & kind = Required(*normalization, "kind", "normalization");
  const Json & mean = Required(*normalization, "mean", "normalization");
  const Json & standardDeviation = Required(*normalization, "standard_deviation", "normalization");
  if (kind == "standardize")
  {
    card.StandardizeTo = std::array<double, 2>{ Number(mean, "normalization.mean"),
                                                PositiveNumber(standardDeviation, "normalization.standard_deviation") };
    return;
  }
  if (kind != "fixed" && kind != "clip")
  {
    FieldError("normalization.kind", "must be \"fixed\", \"standardize\" or \"clip\"; got " + Shown(kind));
  }
  card.Normalization = UNetNormalization(Numbers(mean, "normalization.mean", false),
                                         Numbers(standardDeviation, "normalization.standard_deviation", true));
  if (kind == "clip")
  {
    const std::vector<double> values =
      Numbers(Required(*normalization, "window", "normalization"), "normalization.window", false, 2, 2);
    if (!(values[0] < values[1]))
    {
      FieldError("normalization.window",
                 "must be [low, high] with low below high; got " + Shown((*normalization)["window"]));
    }
    card.Normalization->SetClipWindow(values[0], values[1]);
  }
}

void
ReadSpacing(const Json & record, UNetModelCard & card)
{
  if (const Json * spacing = ObjectField(record, "spacing", "spacing", { "values", "unit" }))
  {
    card.Spacing = Numbers(Required(*spacing, "values", "spacing"), "spacing.values", true, 2, 3);
    const Json & unit = Required(*spacing, "unit", "spacing");
    if (!unit.is_string() || (unit != "pixel" && !unet_detail::MillimetersPerSpacingUnit(unit.get<std::string>())))
    {
      FieldError("spacing.unit", "must be \"mm\", \"um\", \"nm\" or \"pixel\"; got " + Shown(unit));
    }
    card.SpacingUnit = unit.get<std::string>();
  }
}

void
ReadClasses(const Json & record, UNetModelCard & card)
{
  const auto found = record.find("classes");
  if (found == record.end())
  {
    return;
  }
  for (const Json & item : Array(*found, "classes", 2, 65536))
  {
    const std::string field = "classes[" + std::to_string(card.Classes.size()) + "]";
    if (!item.is_object())
    {
      FieldError(field, "must be an object with a name (and a colour); got " + Shown(item));
    }
    CheckKeys(item, field, { "name", "color" });
    const Json *                    checked = &item;
    UNetModelCard::ClassDescription description;
    const Json &                    name = Required(*checked, "name", field);
    if (!name.is_string() || name.get<std::string>().empty())
    {
      FieldError(field + ".name", "must be a non-empty string; got " + Shown(name));
    }
    description.Name = name.get<std::string>();
    if (checked->contains("color"))
    {
      const Json &                color = Array((*checked)["color"], field + ".color", 3, 3);
      std::array<unsigned int, 3> rgb{};
      for (unsigned int k = 0; k < 3; ++k)
      {
        if (!color[k].is_number_integer() || color[k].get<long long>() < 0 || color[k].get<long long>() > 255)
        {
          FieldError(field + ".color", "must be three integers 0 to 255; got " + Shown(color));
        }
        rgb[k] = color[k].get<unsigned int>();
      }
      description.Color = rgb;
    }
    card.Classes.push_back(description);
  }
}

void
ReadSettings(const Json & record, UNetModelCard & card)
{
  if (record.contains("flip_axes"))
  {
    std::vector<unsigned int> axes;
    for (const Json & axis : Array(record["flip_axes"], "flip_axes", 0, 3))
    {
      axes.push_back(static_cast<unsigned int>(Count(axis, "flip_axes[" + std::to_string(axes.size()) + "]", 0)));
    }
    card.FlipAxes = axes;
  }
  if (const Json * tile = ObjectField(record, "tile", "tile", { "size", "overlap" }))
  {
    if (tile->contains("size"))
    {
      for (const Json & edge : Array((*tile)["size"], "tile.size", 2, 3))
      {
        card.TileSize.push_back(Count(edge, "tile.size[" + std::to_string(card.TileSize.size()) + "]", 1));
      }
    }
    if (tile->contains("overlap"))
    {
      card.TileOverlap = Count((*tile)["overlap"], "tile.overlap", 0);
    }
  }
  if (const Json * separation =
        ObjectField(record, "cell_separation", "cell_separation", { "cell_class", "seed_threshold", "cell_threshold" }))
  {
    if (separation->contains("cell_class"))
    {
      card.CellClass = static_cast<unsigned int>(Count((*separation)["cell_class"], "cell_separation.cell_class", 0));
    }
    for (const char * key : { "seed_threshold", "cell_threshold" })
    {
      if (separation->contains(key))
      {
        const std::string field = std::string("cell_separation.") + key;
        const double      value = PositiveNumber((*separation)[key], field);
        if (value > 1.0)
        {
          FieldError(field, "must be in (0, 1]; got " + Shown((*separation)[key]));
        }
        (std::string(key) == "seed_threshold" ? card.SeedThreshold : card.CellThreshold) = value;
      }
    }
  }
  if (const Json * provenance = ObjectField(record, "provenance", "provenance", {}); provenance != nullptr)
  {
    card.ProvenanceJSON = provenance->dump();
  }
}
/** The card's normalisation as its record's "normalization" object, if it has one. */
void
WriteNormalization(const UNetModelCard & card, Json & record)
{
  if (card.StandardizeTo)
  {
    record["normalization"] = { { "kind", "standardize" },
                                { "mean", (*card.StandardizeTo)[0] },
                                { "standard_deviation", (*card.StandardizeTo)[1] } };
  }
  else if (card.Normalization)
  {
    const UNetNormalization & normalization = *card.Normalization;
    record["normalization"] = { { "kind", normalization.HasClipWindow() ? "clip" : "fixed" },
                                { "mean", normalization.GetMean() },
                                { "standard_deviation", normalization.GetStandardDeviation() } };
    if (normalization.HasClipWindow())
    {
      record["normalization"]["window"] = normalization.GetClipWindow();
    }
  }
}

/** The card's classes as its record's "classes" array, if it names them. */
void
WriteClasses(const UNetModelCard & card, Json & record)
{
  if (card.Classes.empty())
  {
    return;
  }
  record["classes"] = Json::array();
  for (const UNetModelCard::ClassDescription & description : card.Classes)
  {
    Json item = { { "name", description.Name } };
    if (description.Color)
    {
      item["color"] = *description.Color;
    }
    record["classes"].push_back(item);
  }
}

/** The card's recommended settings: "flip_axes", "tile" and "cell_separation", each with the fields the card has. */
void
WriteSettings(const UNetModelCard & card, Json & record)
{
  if (card.FlipAxes)
  {
    record["flip_axes"] = *card.FlipAxes;
  }
  const auto setIfPresent = [&record](const char * object, const char * field, const auto & value) {
    if (value)
    {
      record[object][field] = *value;
    }
  };
  if (!card.TileSize.empty())
  {
    record["tile"]["size"] = card.TileSize;
  }
  setIfPresent("tile", "overlap", card.TileOverlap);
  setIfPresent("cell_separation", "cell_class", card.CellClass);
  setIfPresent("cell_separation", "seed_threshold", card.SeedThreshold);
  setIfPresent("cell_separation", "cell_threshold", card.CellThreshold);
}

} // namespace

UNetModelCard
UNetModelCard::FromJSON(const std::string & text)
{
  Json record;
  try
  {
    record = Json::parse(text);
  }
  catch (const Json::parse_error & error)
  {
    itkGenericExceptionMacro("The model card is not valid JSON: " << error.what());
  }
  if (!record.is_object())
  {
    itkGenericExceptionMacro("The model card must be a JSON object; got " << Shown(record) << '.');
  }
  CheckKeys(
    record,
    "",
    { "schema_version", "normalization", "spacing", "classes", "flip_axes", "tile", "cell_separation", "provenance" });
  UNetModelCard card;
  if (!record.contains("schema_version"))
  {
    FieldError("schema_version", "is missing");
  }
  const Json & version = record["schema_version"];
  card.SchemaVersion = static_cast<unsigned int>(Count(version, "schema_version", 1));
  if (card.SchemaVersion > CurrentSchemaVersion)
  {
    FieldError("schema_version",
               "is " + std::to_string(card.SchemaVersion) + ", newer than this release reads (" +
                 std::to_string(CurrentSchemaVersion) + "); update UNetSegmentation");
  }
  ReadNormalization(record, card);
  ReadSpacing(record, card);
  ReadClasses(record, card);
  ReadSettings(record, card);
  return card;
}

std::string
UNetModelCard::ToJSON() const
{
  Json record = Json::object();
  record["schema_version"] = SchemaVersion;
  WriteNormalization(*this, record);
  if (!Spacing.empty())
  {
    record["spacing"] = { { "values", Spacing }, { "unit", SpacingUnit } };
  }
  WriteClasses(*this, record);
  WriteSettings(*this, record);
  if (!ProvenanceJSON.empty())
  {
    record["provenance"] = Json::parse(ProvenanceJSON);
  }
  return record.dump();
}

void
UNetModelCard::VerifyAgainst(unsigned int dimension, unsigned int channels, unsigned int classes) const
{
  if (Normalization)
  {
    for (const auto & [field, values] :
         { std::make_pair("normalization.mean", &Normalization->GetMean()),
           std::make_pair("normalization.standard_deviation", &Normalization->GetStandardDeviation()) })
    {
      if (values->size() != 1 && values->size() != channels)
      {
        FieldError(field,
                   "has " + std::to_string(values->size()) + " values, but the network takes " +
                     std::to_string(channels) + " channel(s); give one value or one per channel");
      }
    }
  }
  if (!Spacing.empty() && Spacing.size() != dimension)
  {
    FieldError("spacing.values",
               "has " + std::to_string(Spacing.size()) + " values, but the network is " + std::to_string(dimension) +
                 "-D");
  }
  if (!Classes.empty() && Classes.size() != classes)
  {
    FieldError("classes",
               "names " + std::to_string(Classes.size()) + " classes, but the network has " + std::to_string(classes));
  }
  if (FlipAxes)
  {
    for (const unsigned int axis : *FlipAxes)
    {
      if (axis >= dimension)
      {
        FieldError("flip_axes",
                   "names axis " + std::to_string(axis) + ", but the network is " + std::to_string(dimension) + "-D");
      }
    }
  }
  if (!TileSize.empty() && TileSize.size() != dimension)
  {
    FieldError("tile.size",
               "has " + std::to_string(TileSize.size()) + " values, but the network is " + std::to_string(dimension) +
                 "-D");
  }
  if (CellClass && *CellClass >= classes)
  {
    FieldError("cell_separation.cell_class",
               "is " + std::to_string(*CellClass) + ", but the network has " + std::to_string(classes) + " classes");
  }
  if (SeedThreshold && CellThreshold && *CellThreshold > *SeedThreshold)
  {
    FieldError("cell_separation.cell_threshold", "must not exceed cell_separation.seed_threshold");
  }
}

} // end namespace itk
