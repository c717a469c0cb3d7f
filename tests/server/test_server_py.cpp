// Runs the Python server tests (tests/server_py, pytest) against the built binary: the openai-client
// suite, and separately the soak and the expert-file fault tests (each starts its own server). Skips when Python
// lacks pytest (or, for the client suite, the openai client); scripts/setup.sh installs both.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace {

// Bounded: `timeout` guards against a hang; the caller says how long the files may take.
int run_pytest(const std::string& files, int timeout_s) {
    const std::string source = FLASHMOE_SOURCE_DIR;
    const std::string cmd = "cd '" + source + "' && FLASHMOE_BINARY='" + FLASHMOE_BINARY +
                            "' FLASHMOE_SOURCE_DIR='" + source + "' timeout " + std::to_string(timeout_s) +
                            " python3 -m pytest " + files + " -q -s -p no:cacheprovider";
    return std::system(cmd.c_str());
}

}  // namespace

TEST(ServerOpenAiClient, PytestSuitePasses) {
    if (std::system("python3 -c 'import openai, pytest' >/dev/null 2>&1") != 0) {
        GTEST_SKIP() << "python3 lacks openai / pytest (scripts/setup.sh installs them)";
    }
    // The client suite takes well under a minute on two cores.
    EXPECT_EQ(run_pytest("tests/server_py --ignore=tests/server_py/test_soak.py "
                         "--ignore=tests/server_py/test_faults.py",
                         600),
              0)
        << "pytest failed (its output is above)";
}

TEST(ServerSoak, PytestSoakPasses) {
    if (std::system("python3 -c 'import pytest' >/dev/null 2>&1") != 0) {
        GTEST_SKIP() << "python3 lacks pytest (scripts/setup.sh installs it)";
    }
    // ~2,300 requests from 32 clients: 30-80 s on two cores (busy or not).
    EXPECT_EQ(run_pytest("tests/server_py/test_soak.py", 300), 0) << "soak failed (its output is above)";
}

TEST(ServerFaults, PytestFaultsPass) {
    if (std::system("python3 -c 'import pytest' >/dev/null 2>&1") != 0) {
        GTEST_SKIP() << "python3 lacks pytest (scripts/setup.sh installs it)";
    }
    // Converts the bundled model and truncates one of its expert files under a running server.
    EXPECT_EQ(run_pytest("tests/server_py/test_faults.py", 120), 0) << "fault test failed (its output is above)";
}
