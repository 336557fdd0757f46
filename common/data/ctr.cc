#include "common/data/ctr.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/data/line_range.h"

namespace fulcrum {
namespace {

// The next tab-separated field of `rest` (consumed); false if none is left.
bool NextField(absl::string_view* rest, absl::string_view* field) {
  if (rest->data() == nullptr) return false;
  const size_t tab = rest->find('\t');
  if (tab == absl::string_view::npos) {
    *field = *rest;
    *rest = absl::string_view();
  } else {
    *field = rest->substr(0, tab);
    rest->remove_prefix(tab + 1);
  }
  return true;
}

bool ParseHexId(absl::string_view text, uint64_t* id) {
  if (text.empty()) {
    *id = 0;
    return true;
  }
  if (text.size() > 16) return false;
  uint64_t value = 0;
  for (char c : text) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return false;
    }
    value = value << 4 | digit;
  }
  *id = value;
  return true;
}

}  // namespace

absl::StatusOr<CtrDataset> ReadCtr(const std::string& path, const CtrFormat& format, uint64_t begin,
                                   uint64_t end) {
  if (format.numeric_fields < 0 || format.categorical_fields < 0 ||
      format.numeric_fields + format.categorical_fields == 0) {
    return absl::InvalidArgumentError(absl::StrCat("a click log needs fields; asked for ",
                                                   format.numeric_fields, " numeric and ",
                                                   format.categorical_fields, " categorical"));
  }
  absl::StatusOr<LineRange> lines = LineRange::Open(path, begin, end);
  if (!lines.ok()) return lines.status();
  CtrDataset data;
  data.format = format;
  absl::string_view line;
  while (lines->Next(&line)) {
    if (line.empty()) continue;
    auto malformed = [&](absl::string_view what) {
      return absl::DataLossError(
          absl::StrCat(path, ": line ", lines->line_number(), " after byte ", begin, ": ", what));
    };
    absl::string_view rest = line;
    absl::string_view field;
    NextField(&rest, &field);
    if (field != "0" && field != "1") return malformed("the label must be 0 or 1");
    data.labels.push_back(field == "1" ? 1.0f : 0.0f);
    for (int i = 0; i < format.numeric_fields; ++i) {
      if (!NextField(&rest, &field)) {
        return malformed(absl::StrCat("has ", i, " numeric fields; expected ",
                                      format.numeric_fields, " and ", format.categorical_fields,
                                      " categorical ones"));
      }
      int64_t value = 0;
      if (!field.empty() && !absl::SimpleAtoi(field, &value)) {
        return malformed(absl::StrCat("numeric field ", i + 1, " is not an integer"));
      }
      data.numeric.push_back(static_cast<float>(value));
    }
    for (int i = 0; i < format.categorical_fields; ++i) {
      uint64_t id;
      if (!NextField(&rest, &field)) {
        return malformed(
            absl::StrCat("has ", i, " categorical fields; expected ", format.categorical_fields));
      }
      if (!ParseHexId(field, &id)) {
        return malformed(absl::StrCat("categorical field ", i + 1,
                                      " is not a hexadecimal id of at most 16 digits"));
      }
      data.ids.push_back(id);
    }
    if (rest.data() != nullptr) {
      return malformed(absl::StrCat("has more than ", format.numeric_fields, " numeric and ",
                                    format.categorical_fields, " categorical fields"));
    }
  }
  return data;
}

}  // namespace fulcrum
