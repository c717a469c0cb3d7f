// Runs `f`, expects it to throw flashmoe::Error of kind `want`, and returns the message (empty and a
// test failure when nothing or something else was thrown).
#pragma once

#include "util/error.h"

#include <gtest/gtest.h>

#include <string>

namespace flashmoe::test {

template <typename F>
std::string error_of(F&& f, ErrorKind want) {
    try {
        f();
    } catch (const Error& e) {
        EXPECT_EQ(int(e.kind()), int(want)) << e.what();
        return e.what();
    }
    ADD_FAILURE() << "no flashmoe::Error thrown";
    return "";
}

}  // namespace flashmoe::test
