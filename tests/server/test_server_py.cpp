// Runs the openai-client tests (tests/server_py, pytest) against the built binary. Skips when
// Python lacks the openai client or pytest (scripts/setup.sh installs both).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

TEST(ServerOpenAiClient, PytestSuitePasses) {
    const std::string source = FLASHMOE_SOURCE_DIR;
    if (std::system("python3 -c 'import openai, pytest' >/dev/null 2>&1") != 0) {
        GTEST_SKIP() << "python3 lacks openai / pytest (scripts/setup.sh installs them)";
    }
    // Bounded: the suite takes well under a minute on two cores; `timeout` guards against a hang.
    const std::string cmd = "cd '" + source + "' && FLASHMOE_BINARY='" + FLASHMOE_BINARY +
                            "' FLASHMOE_SOURCE_DIR='" + source +
                            "' timeout 600 python3 -m pytest tests/server_py -q -p no:cacheprovider";
    int status = std::system(cmd.c_str());
    EXPECT_EQ(status, 0) << "pytest failed (its output is above): " << cmd;
}
