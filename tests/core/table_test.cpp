#include <gtest/gtest.h>

#include "mcompress/core/table.h"

namespace mcompress {
namespace {

TEST(TableTest, NumbersAlignRightNamesLeft) {
  Table t({"tensor", "bytes"});
  t.add_row({"0.weight", "216"});
  t.add_row({"11.bias", "1.5 KiB"});
  EXPECT_EQ(t.to_text(),
            "tensor    bytes  \n"
            "--------  -------\n"
            "0.weight      216\n"
            "11.bias   1.5 KiB\n");
}

TEST(TableTest, MarkdownAndPadding) {
  Table t({"a", "b"});
  t.add_row({"x"});
  EXPECT_EQ(t.to_markdown(), "| a | b |\n| --- | --- |\n| x |  |\n");
  EXPECT_THROW(t.add_row({"1", "2", "3"}), std::logic_error);
}

TEST(TableTest, Formatting) {
  EXPECT_EQ(format_fixed(0.91234, 2), "0.91");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(100), "100 B");
}

}  // namespace
}  // namespace mcompress
