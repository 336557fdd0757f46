#include "common/base/process.h"

#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"

namespace fulcrum {
namespace {

#if defined(__GLIBC__)
// Runs on the main thread, so blocks come from the main arena, which
// mallinfo2 describes.
TEST(KeepFreedMemoryTest, LargeBlocksComeFromTheHeapAndStayMappedWhenFreed) {
  KeepFreedMemory();
  constexpr size_t kBlock = 4 << 20;  // past glibc's default mmap threshold
  const struct mallinfo2 before = mallinfo2();
  void* block = std::malloc(kBlock);
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, kBlock);
  const struct mallinfo2 held = mallinfo2();
  EXPECT_EQ(held.hblks, before.hblks) << "the block was mmapped on its own";
  EXPECT_GE(held.arena, before.arena + kBlock);
  std::free(block);
  const struct mallinfo2 freed = mallinfo2();
  // Freed at the heap's top, the block is neither unmapped nor trimmed.
  EXPECT_EQ(freed.arena, held.arena);
  EXPECT_GE(freed.fordblks, kBlock);
  // The next block of that size reuses it.
  void* again = std::malloc(kBlock);
  EXPECT_EQ(mallinfo2().arena, held.arena);
  std::free(again);
}
#endif

}  // namespace
}  // namespace fulcrum
