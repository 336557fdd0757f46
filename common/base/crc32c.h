// CRC-32C (Castagnoli), as used by iSCSI, ext4 and leveldb, for checkpoint
// checksums.
#ifndef FULCRUM_COMMON_BASE_CRC32C_H_
#define FULCRUM_COMMON_BASE_CRC32C_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace fulcrum {

// Extends `crc` (the CRC of earlier bytes, 0 to start) over `data`.
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t size);

inline uint32_t Crc32c(absl::string_view data) { return Crc32cExtend(0, data.data(), data.size()); }

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_BASE_CRC32C_H_
